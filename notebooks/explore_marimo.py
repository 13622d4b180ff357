import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _(mo):
    mo.md(
        """
        # neurowidgets in marimo

        The quickstart's explorer, with the layer health of every scanned layer and the selected units'
        histograms, in a marimo notebook (`marimo edit notebooks/explore_marimo.py`, or as an app:
        `marimo run notebooks/explore_marimo.py`). The widgets are the same anywidgets as in Jupyter:
        click a unit, drag a patch over the digit, tap a layer's dead bar or a unit's histogram.
        """
    )
    return


@app.cell
def _():
    import marimo as mo

    import neurowidgets as nw

    return mo, nw


@app.cell
def _(nw):
    data = nw.datasets.digits(lr=0.05)  # a too-high learning rate: some ReLU units die
    scan = nw.scan(data.model, data.test_images, ["relu1", "relu2", "relu3"], k=8, progress=False)
    return data, scan


@app.cell
def _(data, nw, scan):
    # compact: the trace and the card start folded (click a title to unfold), so grid and image fit
    # marimo's short output box
    explorer = nw.explore(
        data.model, data.test_images[:8], data=data.test_images, layer="relu2", scan=scan, compact=True
    )
    explorer  # noqa: B018 (marimo shows a cell's last expression)
    return (explorer,)


@app.cell
def _(explorer, nw, scan):
    health = nw.LayerHealth(scan, follow=explorer)  # tap a layer's dead bar: the explorer opens it
    health  # noqa: B018
    return (health,)


@app.cell
def _(explorer, nw, scan):
    distributions = nw.Distributions(scan, follow=explorer)  # tap a unit's bars: it comes first
    distributions  # noqa: B018
    return (distributions,)


if __name__ == "__main__":
    app.run()
