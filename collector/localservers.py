"""Temporary mosquitto and influxd on 127.0.0.1 (free ports, private directories), for the demo
and the tests. Production deployments use the configs in deploy/ instead."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = {"mosquitto": "sudo apt-get install -y mosquitto", "influxd": "sudo apt-get install -y influxdb"}


class MissingServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str) -> str:
    path = shutil.which(name) or next((str(p) for d in ("/usr/sbin", "/usr/bin", "/sbin")
                                       if (p := Path(d) / name).exists()), None)
    if path is None:
        raise MissingServerError(f"{name} is not installed; install it with: {INSTALL_HINT[name]}")
    return path


@dataclass
class LocalServer:
    name: str
    port: int
    workdir: Path
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


def _wait(check, server: LocalServer, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            log = (server.workdir / f"{server.name}.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{server.name} exited with status {server.process.returncode}:\n{log}")
        if check():
            return
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{server.name} did not start listening on 127.0.0.1:{server.port} in {timeout_s} s")


def _launch(name: str, argv: list[str], workdir: Path, port: int, ready, env: dict | None = None) -> LocalServer:
    """Start ``argv`` with its output in ``workdir/NAME.log`` and wait until ``ready()``."""
    with (workdir / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    server = LocalServer(name, port, workdir, proc)
    _wait(ready, server)
    return server


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def start_mosquitto(workdir: str | Path, port: int | None = None, extra_config: str = "") -> LocalServer:
    """mosquitto with persistence (so QoS 1 sessions survive a restart) and no queue limit.

    ``extra_config`` is appended to the generated file: listener options apply to the one listener
    on ``port`` (e.g. ``cafile``/``certfile``/``keyfile`` for TLS), and a later
    ``allow_anonymous false`` + ``password_file`` overrides the default anonymous access."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous true\n"
        f"user {getpass.getuser()}\n"  # as root it would otherwise drop to 'mosquitto' and lose the dir
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "autosave_interval 1\n"
        # The default (1000) silently drops QoS 1 messages for a slow subscriber; 0 = unlimited.
        "max_queued_messages 0\n"
        "log_dest stderr\n"
        "log_type error\n"
        "log_type warning\n"
        + extra_config)
    return _launch("mosquitto", [find_binary("mosquitto"), "-c", str(conf)], workdir, port,
                   lambda: _port_open(port))


def start_influxd(workdir: str | Path, port: int | None = None) -> LocalServer:
    """influxd 1.x with its data, WAL and meta directories under ``workdir``."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    conf = workdir / "influxdb.conf"
    conf.write_text(
        "reporting-disabled = true\n"
        f'bind-address = "127.0.0.1:{free_port()}"\n'
        f'[meta]\n  dir = "{workdir}/meta"\n'
        f'[data]\n  dir = "{workdir}/data"\n  wal-dir = "{workdir}/wal"\n  query-log-enabled = false\n'
        f'[http]\n  bind-address = "127.0.0.1:{port}"\n  log-enabled = false\n'
        "[monitor]\n  store-enabled = false\n"
        '[logging]\n  level = "warn"\n')

    def ping() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=0.5) as r:
                return r.status == 204
        except OSError:
            return False

    env = {**os.environ, "INFLUXDB_CONFIG_PATH": str(conf)}
    return _launch("influxd", [find_binary("influxd"), "-config", str(conf)], workdir, port, ping, env)
