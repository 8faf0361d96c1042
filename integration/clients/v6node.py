#!/usr/bin/python3
"""A scripted vantage6 node for the end-to-end tests.

It connects to the /tasks namespace with python-socketio's ``socketio.Client``
(Debian's python3-socketio 5.7.2, the library a vantage6 node uses), the way a
node does, and is driven through stdin/stdout with one JSON object a line.

Run it with Debian's interpreter: ``/usr/bin/python3 v6node.py --url ...``.

Output lines (stdout, flushed at once):
  {"type":"upgrade","transport":"websocket"}        engine.io polling -> websocket
  {"type":"connect","sid":"...","transport":"polling|websocket"}
  {"type":"event","event":"sync","args":[]}         every event on /tasks, all its arguments
  {"type":"disconnect"}
  {"type":"connect_error","message":"...","data":...}  data: the library's raw argument
  {"type":"error","message":"..."}
  {"type":"ready"}                                  stdin is being read
  {"type":"sent","event":"ping"}                    an emit returned
  {"type":"ack","id":7,"args":[...]}                the server answered an ack request
  {"type":"handler_error","event":"sync","message":"..."}  with --v6-handlers: a handler
                                                    raised (e.g. TypeError: an argument too many)
  {"type":"disconnected"}                           the disconnect command returned

Input lines (stdin):
  {"cmd":"emit","event":"ping","args":[]}           args are the exact positional arguments
  {"cmd":"emit","event":"x","args":[{}],"ack":7}    request an ack, reported with id 7
  {"cmd":"connect"} / {"cmd":"connect","token":"T"} connect again (optionally with a new token)
  {"cmd":"disconnect"}
  {"cmd":"exit"}
On stdin EOF the client disconnects and exits 0.
"""

import argparse
import json
import os
import sys
import threading

import socketio

NAMESPACE = "/tasks"

# The events vantage6 4.14 sends to /tasks (see the protocol spec).
KNOWN_EVENTS = [
    "sync",
    "expired_token",
    "invalid_token",
    "node-online",
    "node-offline",
    "new_task",
    "kill_containers",
    "algorithm_status_change",
    "algorithm_log",
    "status_update",
    "message",
]

_out_lock = threading.Lock()


def out(obj):
    """Print one JSON line; safe to call from any thread."""
    line = json.dumps(obj, separators=(",", ":"), default=repr)
    with _out_lock:
        try:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            # Nobody reads us any more (the test went away): stop quietly.
            os._exit(0)


def parse_args(argv):
    p = argparse.ArgumentParser(description="scripted vantage6 node (python-socketio)")
    p.add_argument("--url", required=True, help="server root, e.g. http://127.0.0.1:PORT")
    p.add_argument("--token", default="", help="access token")
    p.add_argument("--auth-mode", choices=["header", "auth", "none"], default="header",
                   help="header: Authorization: Bearer T (default); auth: auth={'token': T}")
    p.add_argument("--transports", default="polling,websocket",
                   help="polling,websocket (default: polling then upgrade), websocket or polling")
    p.add_argument("--no-reconnect", action="store_true", help="reconnection=False")
    p.add_argument("--events", default="",
                   help="extra event names to register explicitly (comma separated)")
    p.add_argument("--origin", default="", help="send this Origin header")
    p.add_argument("--v6-handlers", action="store_true",
                   help="handle sync, expired_token and invalid_token with handlers that take no "
                        "argument, as the vantage6 node's on_sync(self) does; an event with an "
                        "argument then raises TypeError, reported as a handler_error line")
    p.add_argument("--wait-timeout", type=float, default=1.0,
                   help="seconds connect() waits for the namespace ack (library default 1)")
    p.add_argument("--threaded-dispatch", action="store_true",
                   help="keep python-engineio's one-thread-per-message dispatch (output lines "
                        "may then come out of wire order); default dispatches in wire order")
    return p.parse_args(argv)


class Node:
    def __init__(self, args):
        self.args = args
        self.token = args.token
        self.transports = [t.strip() for t in args.transports.split(",") if t.strip()]
        self.emit_lock = threading.Lock()
        self.sio = socketio.Client(reconnection=not args.no_reconnect, request_timeout=60)
        self._patch_engineio()
        self._register_handlers()

    # -- engine.io hooks ---------------------------------------------------
    def _patch_engineio(self):
        eio = self.sio.eio

        # websocket-client always sends its own "Origin: http://<server host>"
        # on the websocket request; an Origin given with --origin would be
        # added as a second header. Hand it to websocket-client instead.
        if self.args.origin:
            import engineio.client as eio_client

            orig_create = eio_client.websocket.create_connection

            def create_connection(url, **kw):
                header = kw.get("header")
                if isinstance(header, dict) and "Origin" in header:
                    header = dict(header)
                    kw["origin"] = header.pop("Origin")
                    kw["header"] = header
                return orig_create(url, **kw)

            eio_client.websocket.create_connection = create_connection

        # Report a successful polling -> websocket upgrade. It is reported when
        # the upgraded transport starts its write loop, i.e. before anything
        # (the namespace CONNECT included) is sent or read over the websocket.
        orig_ws = eio._connect_websocket

        def connect_websocket(url, headers, engineio_path):
            if not eio.sid:  # a direct websocket connection, not an upgrade
                return orig_ws(url, headers, engineio_path)
            orig_start = eio.start_background_task

            def start_background_task(target, *a, **kw):
                if target == eio._write_loop and eio.current_transport == "websocket":
                    out({"type": "upgrade", "transport": "websocket"})
                return orig_start(target, *a, **kw)

            eio.start_background_task = start_background_task
            try:
                return orig_ws(url, headers, engineio_path)
            finally:
                del eio.start_background_task  # back to the class's method

        eio._connect_websocket = connect_websocket

        # python-engineio 4.3.4 runs every received message in a new thread, so
        # two packets can be handled out of order. Tests compare the order of
        # lines, so by default handle them in the reading thread, in wire order.
        if not self.args.threaded_dispatch:
            orig_trigger = eio._trigger_event

            def trigger_event(event, *a, **kw):
                if event == "message":
                    kw["run_async"] = False
                return orig_trigger(event, *a, **kw)

            eio._trigger_event = trigger_event

    # -- socket.io handlers ------------------------------------------------
    def _register_handlers(self):
        sio = self.sio

        def on_connect(*_):
            out({"type": "connect", "sid": sio.get_sid(NAMESPACE), "transport": sio.transport()})

        def on_disconnect(*_):
            out({"type": "disconnect"})

        def on_connect_error(*data):
            # Engine.IO failures give a string, a rejected namespace the
            # CONNECT_ERROR payload ({"message": ..., "data": ...}).
            raw = data[0] if len(data) == 1 else list(data)
            message = raw.get("message") if isinstance(raw, dict) else raw
            out({"type": "connect_error", "message": str(message), "data": raw})

        sio.on("connect", on_connect, namespace=NAMESPACE)
        sio.on("disconnect", on_disconnect, namespace=NAMESPACE)
        sio.on("connect_error", on_connect_error, namespace=NAMESPACE)
        # Engine.IO-level connection failures are reported on "/".
        sio.on("connect_error", on_connect_error, namespace="/")

        def make_handler(name):
            def handler(*args):
                out({"type": "event", "event": name, "args": list(args)})
            return handler

        extra = [e.strip() for e in self.args.events.split(",") if e.strip()]
        for name in KNOWN_EVENTS + extra:
            sio.on(name, make_handler(name), namespace=NAMESPACE)

        if self.args.v6_handlers:
            # The vantage6 4.14 node's handlers of these events take no
            # argument (NodeTaskNamespace.on_sync(self), ...).
            def make_zero_arg_handler(name):
                def handler():
                    out({"type": "event", "event": name, "args": []})
                return handler

            for name in ("sync", "expired_token", "invalid_token"):
                sio.on(name, make_zero_arg_handler(name), namespace=NAMESPACE)

            # Where the real node would crash, say so on stdout.
            orig_trigger = sio._trigger_event

            def trigger_event(event, namespace, *args):
                try:
                    return orig_trigger(event, namespace, *args)
                except TypeError as exc:
                    out({"type": "handler_error", "event": event, "message": str(exc)})
                    return None

            sio._trigger_event = trigger_event

        # python-socketio 5.7.2 has a per-namespace catch-all: handler(event, *args),
        # used for any event without an explicit handler.
        def catch_all(event, *args):
            out({"type": "event", "event": event, "args": list(args)})

        sio.on("*", catch_all, namespace=NAMESPACE)

    # -- commands ----------------------------------------------------------
    def connect(self):
        headers = {}
        auth = None
        if self.args.auth_mode == "header":
            headers["Authorization"] = "Bearer " + self.token
        elif self.args.auth_mode == "auth":
            auth = {"token": self.token}
        if self.args.origin:
            headers["Origin"] = self.args.origin
        try:
            self.sio.connect(self.args.url, headers=headers, auth=auth,
                             transports=self.transports, namespaces=[NAMESPACE],
                             wait_timeout=self.args.wait_timeout)
        except Exception as exc:  # connection refused, namespace rejected, ...
            out({"type": "error", "message": "connect: %s" % exc})

    def emit(self, cmd):
        event = cmd.get("event")
        args = cmd.get("args") or []
        if not isinstance(args, list):
            args = [args]
        callback = None
        if "ack" in cmd:
            ack_id = cmd["ack"]

            def callback(*ack_args):
                out({"type": "ack", "id": ack_id, "args": list(ack_args)})

        # emit() sends a tuple as that many arguments: () is zero arguments,
        # (None,) a single null.
        with self.emit_lock:
            self.sio.emit(event, tuple(args), namespace=NAMESPACE, callback=callback)
        out({"type": "sent", "event": event})

    def disconnect(self):
        try:
            self.sio.disconnect()
        except Exception as exc:
            out({"type": "error", "message": "disconnect: %s" % exc})

    def run(self):
        self.connect()
        out({"type": "ready"})
        for raw in sys.stdin:
            raw = raw.strip()
            if not raw:
                continue
            try:
                cmd = json.loads(raw)
                name = cmd.get("cmd")
                if name == "emit":
                    self.emit(cmd)
                elif name == "disconnect":
                    self.disconnect()
                    out({"type": "disconnected"})
                elif name == "connect":
                    if "token" in cmd:
                        self.token = cmd["token"]
                    self.connect()
                elif name == "exit":
                    break
                else:
                    out({"type": "error", "message": "unknown command: %r" % name})
            except Exception as exc:
                out({"type": "error", "message": "%s: %s" % (type(exc).__name__, exc)})
        self.disconnect()


def main():
    args = parse_args(sys.argv[1:])
    Node(args).run()
    sys.stdout.flush()
    # The client's threads are daemons, but a reconnect loop or a pending
    # long-poll must never keep the process alive after exit.
    os._exit(0)


if __name__ == "__main__":
    main()
