"""NoDelayConnection: the kernel websocket's socket gets TCP_NODELAY before jupyter_server connects it.

The browser tests run JupyterLab with it (tests/browser/conftest.py), as scripts/quickstart does."""

from __future__ import annotations

from jupyter_server.serverapp import ServerApp
from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection

from neurowidgets.server import NoDelayConnection


class Handler:
    """Records what the connection asks of the tornado websocket handler."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool]] = []

    def set_nodelay(self, value: bool) -> None:
        self.calls.append(("set_nodelay", value))


def test_nodelay_is_set_before_the_connection_connects(monkeypatch):
    handler = Handler()
    monkeypatch.setattr(ZMQChannelsWebsocketConnection, "connect", lambda self: handler.calls.append(("connect", True)))
    connection = NoDelayConnection.__new__(NoDelayConnection)  # no kernel manager: connect() is jupyter_server's
    monkeypatch.setattr(NoDelayConnection, "websocket_handler", handler, raising=False)
    connection.connect()
    assert handler.calls == [("set_nodelay", True), ("connect", True)]


def test_jupyter_server_accepts_it_as_its_connection_class():
    app = ServerApp(kernel_websocket_connection_class="neurowidgets.server.NoDelayConnection")
    assert app.kernel_websocket_connection_class is NoDelayConnection
