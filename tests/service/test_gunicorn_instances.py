"""Two gunicorn instances of the service on one host do not step on each other's control socket."""

from __future__ import annotations

import time
from pathlib import Path

import requests
from served import emulator_env, free_port, start_gunicorn, stop, wait_ready

from emulator import Emulator


def wait_for(path: Path, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def start_two(emulator: Emulator, tmp_path: Path, sockets: bool) -> list[tuple[str, object, Path]]:
    home = tmp_path / "home"  # gunicorn's per-user default would be $HOME/.gunicorn/gunicorn.ctl
    home.mkdir(exist_ok=True)
    started = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        run_dir.mkdir()
        port = free_port()
        env = emulator_env(
            emulator, PROVISIONER_BIND=f"127.0.0.1:{port}", PROVISIONER_WORKERS="1", HOME=str(home)
        )
        env.pop("XDG_RUNTIME_DIR", None)
        if sockets:
            env["PROVISIONER_CONTROL_SOCKET"] = str(run_dir / "gunicorn.ctl")
        process = start_gunicorn(env, run_dir / "stderr.log")
        base = f"http://127.0.0.1:{port}"
        wait_ready(base, process)
        started.append((base, process, run_dir))
    return started


def test_each_instance_keeps_its_own_control_socket(emulator: Emulator, tmp_path: Path) -> None:
    (base_a, process_a, run_a), (base_b, process_b, run_b) = start_two(emulator, tmp_path, sockets=True)
    try:
        assert wait_for(run_a / "gunicorn.ctl") and wait_for(run_b / "gunicorn.ctl")
        assert stop(process_a) == 0
        assert not (run_a / "gunicorn.ctl").exists()
        assert (run_b / "gunicorn.ctl").exists(), "stopping one instance removed the other's socket"
        assert requests.get(base_b + "/healthz", timeout=5).status_code == 200
        assert not (tmp_path / "home" / ".gunicorn" / "gunicorn.ctl").exists()
    finally:
        stop(process_a)
        stop(process_b)


def test_without_a_configured_path_no_shared_control_socket_is_made(
    emulator: Emulator, tmp_path: Path
) -> None:
    (_, process_a, _), (base_b, process_b, _) = start_two(emulator, tmp_path, sockets=False)
    try:
        time.sleep(0.5)
        assert not (tmp_path / "home" / ".gunicorn" / "gunicorn.ctl").exists()
        assert stop(process_a) == 0
        assert requests.get(base_b + "/healthz", timeout=5).status_code == 200
    finally:
        stop(process_a)
        stop(process_b)
