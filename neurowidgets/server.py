"""Low-latency kernel websockets for JupyterLab and Notebook 7: TCP_NODELAY on the server's socket to
the browser.

jupyter_server leaves Nagle's algorithm on for kernel websockets, so a message that follows another
within a round trip (a widget's state update right after the kernel's "busy" status) waits for the
browser's delayed ACK, about 40 ms on Linux: most of the latency of dragging a patch over an image,
when the kernel itself answers in about a millisecond (see benchmarks/drag_latency.py). Start the
server with this connection class to switch Nagle off for kernel websockets:

    jupyter lab --ServerApp.kernel_websocket_connection_class=neurowidgets.server.NoDelayConnection

``scripts/quickstart`` and the browser tests do.
"""

from __future__ import annotations

import asyncio

from jupyter_server.services.kernels.connection.channels import ZMQChannelsWebsocketConnection


class NoDelayConnection(ZMQChannelsWebsocketConnection):
    """jupyter_server's kernel websocket connection, with TCP_NODELAY on its socket."""

    def connect(self) -> asyncio.Future[None] | None:
        self.websocket_handler.set_nodelay(True)
        return super().connect()
