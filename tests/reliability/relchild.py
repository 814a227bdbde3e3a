"""Child side of the kill tests: runs ``lavise.cli.main`` in a forked process and SIGKILLs it on cue.

The parent (``_util.Lavise``) starts a multiprocessing *forkserver* that has imported torch and
lavise once; every command is then a fresh forked process (a real process, killed with a real
SIGKILL), which costs milliseconds instead of the seconds a ``python -m lavise.cli`` start costs.

Kill points (``kill`` argument, a tuple):
    ("forward", n)                   at the n-th forward pass of the target model (mid-extraction)
    ("replace", pattern, n, when)    at the n-th ``os.replace`` onto a name matching the glob
                                     ``pattern``, "before" or "after" the rename (atomic-write boundaries)
    ("step", n)                      at the n-th optimiser step (mid-training)

Fault injection without a kill: ("enospc-replace", pattern) and ("enospc-append",) make those writes
fail with ENOSPC, as on a full disk.
"""
from __future__ import annotations

import fnmatch
import os
import signal
import sys

import torch  # noqa: F401 - preloaded by the forkserver

import lavise.cli  # noqa: F401
import lavise.explain  # noqa: F401
import lavise.train  # noqa: F401
from lavise.data import list_datasets


def _warm_up() -> None:
    """Import and initialise once in the forkserver what every command needs (single-threaded, fork-safe)."""
    torch.set_num_threads(1)
    list_datasets()  # imports every loader module
    import lavise.commands.core  # noqa: F401

    head = lavise.explainer.ExplainerHead(16, 4)
    opt = torch.optim.Adam(head.parameters())
    head(torch.randn(4, 16)).sum().backward()
    opt.step()
    torch.nn.functional.conv2d(torch.randn(1, 3, 8, 8), torch.randn(2, 3, 3, 3))


_warm_up()


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _install(kill: tuple | None) -> None:
    if not kill:
        return
    if kill[0] == "forward":
        import relmodels

        relmodels.KILL_AT_FORWARD = kill[1]
    elif kill[0] == "replace":
        _, pattern, nth, when = kill
        real = os.replace
        seen = [0]

        def replace(src, dst, *a, **k):
            if fnmatch.fnmatch(os.path.basename(os.fspath(dst)), pattern):
                seen[0] += 1
                if seen[0] == nth:
                    if when == "before":
                        _die()
                    real(src, dst, *a, **k)
                    _die()
            return real(src, dst, *a, **k)

        os.replace = replace
    elif kill[0] == "step":
        real_step = torch.optim.Adam.step
        steps = [0]

        def step(self, *a, **k):
            steps[0] += 1
            if steps[0] == kill[1]:
                _die()
            return real_step(self, *a, **k)

        torch.optim.Adam.step = step
    elif kill[0] == "enospc-replace":  # the disk fills up when a file matching the glob is renamed into place
        import errno

        real = os.replace

        def replace(src, dst, *a, **k):
            if fnmatch.fnmatch(os.path.basename(os.fspath(dst)), kill[1]):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(src, dst, *a, **k)

        os.replace = replace
    elif kill[0] == "enospc-append":  # the disk fills up while extraction appends feature rows
        import errno

        import lavise.features.parts

        def append(self, name, arr):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.folder / name))

        lavise.features.parts.PartWriter.append = append
    else:
        raise ValueError(kill)


def run(args: list[str], cwd: str, env: dict, kill: tuple | None, log: str) -> None:
    os.chdir(cwd)
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    torch.set_num_threads(1)
    _install(kill)
    try:
        rc = lavise.cli.main(args)
    except BaseException:  # noqa: BLE001 - a traceback is a test failure; show it
        import traceback

        traceback.print_exc()
        rc = 99
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(rc)
