"""Device private keys: generated on demand, or ahead of time by a `KeyPool` thread.

Only RSA-2048 key generation costs anything (about 40 ms, with a tail past 100 ms, measured on
2 cores), so keys for CreateKeysAndCertificate come from the pool and are never generated on the
asyncio event loop.
"""

from __future__ import annotations

import queue
import threading
from typing import Literal

from cryptography.hazmat.primitives.asymmetric import ec, rsa

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_key(algorithm: Literal["rsa", "ec"]) -> PrivateKey:
    if algorithm == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if algorithm == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unknown key algorithm {algorithm!r} (rsa or ec)")


class KeyPool:
    """Private keys generated ahead of time by a daemon thread.

    `take()` blocks its calling thread (the server calls it through `asyncio.to_thread`); when the
    pool is empty it generates the key in the calling thread rather than wait for the pool thread.
    """

    def __init__(self, size: int = 8, algorithm: Literal["rsa", "ec"] = "rsa") -> None:
        if size < 0:
            raise ValueError("size must be >= 0")
        if algorithm not in ("rsa", "ec"):
            raise ValueError(f"unknown key algorithm {algorithm!r} (rsa or ec)")
        self.size = size
        self.algorithm: Literal["rsa", "ec"] = algorithm
        self._keys: queue.Queue[PrivateKey] = queue.Queue(maxsize=max(size, 1))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ready(self) -> int:
        """How many keys are waiting (approximate, for tests and metrics)."""
        return self._keys.qsize()

    def start(self) -> None:
        if self.running or self.size == 0:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._fill, name="key-pool", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the pool thread and wait for it (at most one key generation in progress)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"key pool thread did not stop within {timeout} s")

    def take(self, timeout: float = 0.0) -> PrivateKey:
        """A fresh key: from the pool, waiting at most `timeout` s, else generated here."""
        try:
            if timeout > 0:
                return self._keys.get(timeout=timeout)
            return self._keys.get_nowait()
        except queue.Empty:
            return generate_key(self.algorithm)

    def _fill(self) -> None:
        while not self._stop.is_set():
            if self._keys.full():
                # Woken at least every 50 ms to notice both stop() and a take().
                self._stop.wait(0.05)
                continue
            key = generate_key(self.algorithm)
            try:
                self._keys.put_nowait(key)
            except queue.Full:
                continue
