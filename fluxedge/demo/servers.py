"""Temporary mosquitto and influxd on 127.0.0.1 (free ports, private directories), for the demo
and the tests. Production deployments use the configs in deploy/; :func:`start_shipped_mosquitto`
runs mosquitto from those very files (deploy/mosquitto), only ports and paths changed."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

INSTALL_HINT = {"mosquitto": "sudo apt-get install -y mosquitto", "influxd": "sudo apt-get install -y influxdb",
                "mosquitto_passwd": "sudo apt-get install -y mosquitto", "openssl": "sudo apt-get install -y openssl"}
#: The production broker configuration: mosquitto.conf (-> /etc/mosquitto/conf.d/) and fluxedge.acl.
SHIPPED_MOSQUITTO = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


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


@dataclass
class ShippedMosquitto(LocalServer):
    """mosquitto running the shipped deploy/mosquitto config: ``port`` is its loopback listener
    (1883 in production, the collectors'), ``tls_port`` its TLS listener (8883, the stations')."""

    tls_port: int = 0
    #: directory with ca.crt (the CA a client trusts), broker.crt and broker.key
    certs: Path | None = None


def make_test_certificates(directory: str | Path) -> Path:
    """A private CA (``ca.crt``/``ca.key``) and a broker certificate for 127.0.0.1 and localhost
    (``broker.crt``/``broker.key``) in ``directory``, made with the openssl CLI unless already there."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MissingServerError(f"openssl is not installed; install it with: {INSTALL_HINT['openssl']}")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    if not (d / "ca.crt").exists():
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fluxedge-test-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    if not (d / "broker.crt").exists():
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "broker.key",
            "-out", "broker.csr")
        (d / "broker.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        run("x509", "-req", "-in", "broker.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "broker.ext", "-out", "broker.crt")
    return d


def shipped_mosquitto_config(conf_text: str, *, port: int, tls_port: int, certs: Path, password_file: Path,
                             acl_file: Path, uncomment: Iterable[str] = ()) -> str:
    """The shipped ``mosquitto.conf`` with only this machine's bits changed: the two listeners on
    127.0.0.1 and free ports, the TLS files, the password file and the ACL's path. Every other line,
    comments included, stays as shipped, so a shipped line mosquitto cannot read fails here too.
    ``uncomment`` names options the file offers commented out (``# require_certificate true``).
    Raises ValueError if the file no longer has the shape this relies on."""
    listeners = {"8883": f"listener {tls_port} 127.0.0.1", "1883": f"listener {port} 127.0.0.1"}
    wanted = set(uncomment)
    seen: set[str] = set()
    out = []
    for line in conf_text.splitlines():
        words = line.split()
        if len(words) == 3 and words[0] == "#" and words[1] in wanted:
            line, words = line.lstrip("# "), words[1:]
            seen.add(f"uncomment {words[0]}")
        key = words[0] if words and not line.startswith("#") else None
        if key == "listener":
            if words[1] not in listeners:
                raise ValueError(f"shipped mosquitto.conf: unexpected listener {line!r} (expected 8883 and 1883)")
            line = listeners.pop(words[1])
        elif key in ("cafile", "certfile", "keyfile"):
            line = f"{key} {certs / Path(words[1]).name}"
        elif key == "password_file":
            line = f"password_file {password_file}"
        elif key == "acl_file":
            line = f"acl_file {acl_file}"
        if key is not None:
            seen.add(key)
        out.append(line)
    missing = [k for k in ("cafile", "certfile", "keyfile", "password_file", "acl_file") if k not in seen]
    missing += [f"listener {p}" for p in listeners] + [f"# {w}" for w in wanted if f"uncomment {w}" not in seen]
    if missing:
        raise ValueError(f"shipped mosquitto.conf: no {', '.join(missing)} line to adapt to this machine")
    return "\n".join(out) + "\n"


def start_shipped_mosquitto(workdir: str | Path, accounts: Mapping[str, str], port: int | None = None,
                            tls_port: int | None = None, certs: str | Path | None = None,
                            uncomment: Iterable[str] = (), conf: str | Path | None = None,
                            acl: str | Path | None = None) -> ShippedMosquitto:
    """mosquitto laid out as on a Debian server: a top-level file like Debian's
    /etc/mosquitto/mosquitto.conf (pid file, persistence location, log, ``include_dir conf.d``,
    and ``user`` so that it keeps this user's rights) and in ``conf.d`` the shipped
    deploy/mosquitto/mosquitto.conf adapted by :func:`shipped_mosquitto_config`; the ACL is the
    shipped fluxedge.acl itself, read in place. ``accounts`` (user -> password) become the password
    file. Restart on the same ``workdir`` and ports to keep the persistent sessions.
    ``conf``/``acl`` replace the shipped files (for tests that show what an older file did)."""
    workdir = Path(workdir).resolve()
    (workdir / "conf.d").mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    tls_port = tls_port or free_port()
    certs = Path(certs).resolve() if certs is not None else make_test_certificates(workdir / "certs")
    passwd = workdir / "fluxedge.passwd"
    passwd.write_text("".join(f"{user}:{password}\n" for user, password in accounts.items()))
    subprocess.run([find_binary("mosquitto_passwd"), "-U", str(passwd)], check=True, capture_output=True)
    acl = Path(acl).resolve() if acl is not None else SHIPPED_MOSQUITTO / "fluxedge.acl"
    text = Path(conf or SHIPPED_MOSQUITTO / "mosquitto.conf").read_text()
    (workdir / "conf.d" / "fluxedge.conf").write_text(shipped_mosquitto_config(
        text, port=port, tls_port=tls_port, certs=certs, password_file=passwd, acl_file=acl, uncomment=uncomment))
    top = workdir / "mosquitto.conf"
    top.write_text(
        "# like Debian's /etc/mosquitto/mosquitto.conf, with this machine's paths\n"
        f"user {getpass.getuser()}\n"  # as root it would otherwise drop to 'mosquitto' and lose the dir
        f"pid_file {workdir}/mosquitto.pid\n"
        "persistence true\n"
        f"persistence_location {workdir}/\n"
        "log_dest stderr\n"
        f"include_dir {workdir}/conf.d\n")
    with (workdir / "mosquitto.log").open("ab") as log:
        proc = subprocess.Popen([find_binary("mosquitto"), "-c", str(top)], stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    server = ShippedMosquitto("mosquitto", port, workdir, proc, tls_port=tls_port, certs=certs)
    _wait(lambda: _port_open(port) and _port_open(tls_port), server)
    return server


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
