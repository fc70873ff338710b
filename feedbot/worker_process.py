"""The inbox's workers in a process of their own, started and watched by `feedbot run`.

Acks and the work behind them shared one interpreter: while a worker filed a report, a
request that arrived waited for its turn at the interpreter, and on a 2-core machine one
core stayed idle (`docs/performance.md`). `feedbot run` now starts a child process
(`feedbot inbox-worker`, not meant to be started by hand) that does all the work: the inbox
workers, the outbox and webhook senders. The parent verifies, stores and answers, and runs
the scheduled jobs. Everything that makes the inbox safe stays in the database (an entry's
work commits with its done mark), so the split changes who does the work, not what a crash
can lose. On SQLite the child is the one process that claims outbox messages, which keeps
"every claim not mine is a dead process's" true (`feedbot.core.liveness`).

The two talk over pipes, one line per message:

- parent to child (the child's stdin): `wake` (a request was stored: for the inbox workers),
  `send` (something was queued in the outbox: for the senders), `quit` (finish the entry in
  hand, then stop);
- child to parent (a pipe of its own): `report <source>` (a report was filed) and
  `delivery <outcome>` (an outbox delivery attempt ended): counted in the parent's
  `/metrics`.

The child dies with its parent: an end of its stdin without `quit` means the parent is gone,
and it exits at once, its entry in hand rolled back and left for the next worker. A child
that exits on its own is started again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO

from feedbot.metrics import counted_elsewhere

log = logging.getLogger(__name__)

RESTART_AFTER = 1.0
"""Seconds before a child that exited on its own is started again; doubled after each start
that did not last `STEADY_AFTER`, up to `RESTART_AT_MOST`."""
RESTART_AT_MOST = 30.0
STEADY_AFTER = 60.0
STOP_WITHIN = 15.0
"""Seconds a child may take to finish its entry once told to quit, before it is killed."""

NICENESS = 10
"""How much lower the child's CPU priority is than its parent's: answering Slack goes first
(about nine tenths of a busy core), the work takes what is left, and all of a core the
answers leave idle."""

DOWN_TOLERATED = 30.0
"""Seconds the work may be failing before `/healthz` says the bot is unwell: from a child's
exit until a child has run this long again (one that keeps exiting, or cannot be started,
never does)."""

WAKE, SEND, RESTORED, QUIT = "wake", "send", "restored", "quit"


@dataclass(frozen=True)
class Health:
    """Whether the work is done, for `/healthz`: `ok`, and a line that says why."""

    ok: bool
    detail: str


class WorkerProcess:
    """The parent's end: starts the child, tells it what happens here, and hears back.

    What the parent tells is written without ever blocking: the messages are hints (the
    child also looks at the inbox every second), and a child that stopped reading must not
    stall the requests that tell it. A message that does not fit into the pipe is dropped."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        pass_fds: Sequence[int] = (),
        restart_after: float = RESTART_AFTER,
    ) -> None:
        """`pass_fds`: files the child keeps open, such as the SQLite lock file's."""
        self.command = list(command)
        self.pass_fds = tuple(pass_fds)
        self.restart_after = restart_after
        self._process: subprocess.Popen[bytes] | None = None
        self._stdin: int | None = None
        """The child's stdin, non-blocking; None while there is no child to tell."""
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.starts = 0
        self._failing_since: float | None = None
        """When the first child of a run of exits exited (monotonic), until one lasts."""
        self._running_since: float | None = None
        """When the running child started (monotonic), while one runs."""
        self._last_exit: int | None = None

    @property
    def pid(self) -> int | None:
        process = self._process
        return process.pid if process is not None else None

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="inbox-process", daemon=True)
        self._watcher.start()

    def _spawn(self) -> None:
        """Start a child (with `_lock` held)."""
        read_end, write_end = os.pipe()
        try:
            process = subprocess.Popen(  # noqa: S603 (our own command line)
                [*self.command, "--report-fd", str(write_end)],
                stdin=subprocess.PIPE,
                pass_fds=(write_end, *self.pass_fds),
            )
        except BaseException:
            os.close(read_end)
            raise
        finally:
            os.close(write_end)
        assert process.stdin is not None
        os.set_blocking(process.stdin.fileno(), False)
        self._process, self._stdin = process, process.stdin.fileno()
        self._running_since = time.monotonic()
        self.starts += 1
        log.info("inbox workers started in process %s", process.pid)
        threading.Thread(
            target=self._listen, args=(os.fdopen(read_end, "rb"),), name="inbox-news", daemon=True
        ).start()

    def _listen(self, news: IO[bytes]) -> None:
        with news:
            for raw in news:
                word, _, rest = raw.decode("ascii", "replace").strip().partition(" ")
                counted_elsewhere(word, rest)

    def _watch(self) -> None:
        pause = self.restart_after
        while True:
            process = self._process
            assert process is not None
            started = time.monotonic()
            code = process.wait()
            with self._lock:
                if self._stopping.is_set():
                    return
                self._stdin = None
                self._running_since, self._last_exit = None, code
                self._failing_since = self._failing_since or time.monotonic()
                if process.stdin is not None:
                    process.stdin.close()
            if time.monotonic() - started >= STEADY_AFTER:
                pause = self.restart_after
            log.error(
                "the inbox workers' process %s exited with %s; starting it again in %.0f s",
                process.pid,
                code,
                pause,
            )
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, RESTART_AT_MOST)
            with self._lock:
                if self._stopping.is_set():
                    return
                try:
                    self._spawn()
                except OSError as exc:
                    log.error("could not start the inbox workers' process: %s", exc)
                    continue

    def _tell(self, word: str) -> None:
        with self._lock:
            if self._stdin is None:
                return
            try:
                # Shorter than PIPE_BUF, so written whole or not at all.
                os.write(self._stdin, f"{word}\n".encode())
            except BlockingIOError:
                log.debug("the inbox workers' process is not reading; dropped %r", word)
            except OSError:
                pass  # it exited meanwhile; the watcher starts it again

    def health(self, tolerated: float = DOWN_TOLERATED) -> Health:
        """Unwell once the work has been failing for `tolerated` seconds: since a child
        exited, none has run that long (one that keeps exiting, or none can be started).
        Then requests are still stored and answered here, but little or nothing is filed."""
        now = time.monotonic()
        with self._lock:
            if self._running_since is not None and now - self._running_since >= tolerated:
                self._failing_since = None  # it lasts: the failures are over
            process, running_since = self._process, self._running_since
            failing_since, code = self._failing_since, self._last_exit
        if process is None:
            return Health(False, "not started")
        if failing_since is None:
            return Health(True, f"running in process {process.pid}")
        state = (
            f"running in process {process.pid} for {now - running_since:.0f} s"
            if running_since is not None
            else "not running"
        )
        return Health(
            now - failing_since < tolerated,
            f"{state}, failing for {now - failing_since:.0f} s (the last process exited with "
            f"{code}; {self.starts} started so far)",
        )

    def wake(self) -> None:
        """Requests were stored. Only the inbox workers hear it: under load this comes
        with every request, and senders woken by it each looked for due messages, for over
        half of the child's CPU time while it had nothing to send (`docs/performance.md`)."""
        self._tell(WAKE)

    def wake_senders(self) -> None:
        """Messages were queued in the outbox."""
        self._tell(SEND)

    def access_restored(self) -> None:
        """Slack accepts the bot token again: the child looks at once (`SlackAccess.recheck`),
        not when its own look comes, and sends what waited."""
        self._tell(RESTORED)

    def stop(self, timeout: float = STOP_WITHIN) -> None:
        """Let the child finish the entry in hand and stop; kill it after `timeout`."""
        self._tell(QUIT)
        with self._lock:
            self._stopping.set()
            process, self._stdin = self._process, None
            if process is not None and process.stdin is not None:
                process.stdin.close()  # a child that missed the QUIT stops at the end of it
        if process is None:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the inbox workers' process did not stop in %.0f s; killing it", timeout)
            process.kill()
            process.wait()
        if self._watcher is not None:
            self._watcher.join(5)


def _heard(source: IO[bytes], size: int = 65536) -> Iterator[set[str]]:
    """The words of the lines that have arrived, a batch at a time, until `source` ends."""
    read = getattr(source, "read1", source.read)  # what is there, without waiting for more
    pending = b""
    while chunk := read(size):
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()  # a line not complete yet
        yield {line.decode("ascii", "replace").strip() for line in lines}
    if pending:  # the last line, without its end
        yield {pending.decode("ascii", "replace").strip()}


class ParentLink:
    """The child's end: hears the parent on stdin, reports on the fd it was given."""

    def __init__(
        self,
        report_fd: int,
        *,
        on_wake: Callable[[], None],
        on_send: Callable[[], None],
        on_quit: Callable[[], None],
        on_restored: Callable[[], None] = lambda: None,
    ) -> None:
        self._out = os.fdopen(report_fd, "wb", buffering=0)
        self.on_restored = on_restored
        self._out_lock = threading.Lock()
        self.on_wake = on_wake
        self.on_send = on_send
        self.on_quit = on_quit
        self.quitting = threading.Event()

    @staticmethod
    def yield_cpu() -> None:
        """Give this process's CPU time to its parent first (`NICENESS`): in one process the
        answers went first by taking turns at the interpreter, across processes the
        operating system's scheduler decides. Call it before starting threads: on Linux the
        priority is a thread's, and new threads inherit it."""
        try:
            os.nice(NICENESS)
        except OSError as exc:
            log.warning("could not lower the inbox workers' CPU priority: %s", exc)

    def start(self, stdin: IO[bytes] | None = None) -> None:
        source = stdin if stdin is not None else sys.stdin.buffer
        threading.Thread(target=self._listen, args=(source,), name="parent", daemon=True).start()

    def _listen(self, source: IO[bytes]) -> None:
        for words in _heard(source):
            # Under load the parent says `wake` with every request it stores: what arrived
            # together is acted on once (a line at a time took an eighth of this process's
            # CPU time at a thousand requests a second).
            if WAKE in words:
                self.on_wake()
            if SEND in words:
                self.on_send()
            if RESTORED in words:
                self.on_restored()
            if QUIT in words:
                self.quitting.set()
                self.on_quit()
                return
        if not self.quitting.is_set():
            # The parent died (killed, crashed): so do we, at once. The entry in hand rolls
            # back with this process and stays in the inbox for the next worker.
            log.warning("feedbot run is gone; the inbox workers stop with it")
            logging.shutdown()
            os._exit(0)

    def _send(self, line: str) -> None:
        # A parent that is gone is noticed by the end of stdin in a moment.
        with self._out_lock, contextlib.suppress(BrokenPipeError):
            self._out.write(f"{line}\n".encode())

    def counted(self, kind: str, label: str) -> None:
        """Pass a count on to the parent's `/metrics` (`feedbot.metrics.FORWARDERS`)."""
        self._send(f"{kind} {label}")
