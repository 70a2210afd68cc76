"""Every role in this process, each on a thread of its own, so that acting, sampling, updating
and evaluating overlap (PyTorch, NumPy and EnvPool release the GIL while they work; ale-py
does not).

A role runs its calls one at a time in the order they were made, and a call whose arguments are
futures waits for them on the role's own thread. `wait` returns only once every future it was
given is done, as the inline runtime's already are. So every role sees the same calls, in the
same order, with the same arguments as inline: for a seed, the results are inline's, bit for bit.
Calls only ever wait on calls made before them, so no two roles can wait on each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from typing import Any

from distdqn.runtime.base import RoleT
from distdqn.runtime.inline import close_roles, this_process


def _resolve(argument: Any) -> Any:
    return argument.result() if isinstance(argument, Future) else argument


def _part(whole: Future, index: int) -> Future:
    """A future for element `index` of the tuple `whole` will hold."""
    part: Future = Future()

    def settle(done: Future) -> None:
        error = done.exception()
        if error is not None:
            part.set_exception(error)
        else:
            part.set_result(done.result()[index])

    whole.add_done_callback(settle)
    return part


class ThreadedRuntime:
    def __init__(self) -> None:
        self._roles: list[Any] = []
        self._threads: dict[int, ThreadPoolExecutor] = {}

    def spawn(self, role: type[RoleT], *args: Any, name: str) -> RoleT:
        instance = role(*(_resolve(a) for a in args))
        self._roles.append(instance)
        self._threads[id(instance)] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        return instance

    def call(self, handle: Any, method: str, *args: Any, num_returns: int = 1) -> Any:
        def run() -> Any:
            return getattr(handle, method)(*(_resolve(a) for a in args))

        whole = self._threads[id(handle)].submit(run)
        if num_returns == 1:
            return whole
        return tuple(_part(whole, index) for index in range(num_returns))

    def put(self, value: Any) -> Future:
        done: Future = Future()
        done.set_result(value)
        return done

    def where(self, handle: Any) -> Future:
        return self.put(this_process("threads"))

    def wait(self, futures: Sequence[Future], num_returns: int = 1, timeout: float | None = None) -> list[Future]:
        """Block until all `futures` are done (or one failed, or `timeout` passed); return the done ones."""
        done, _ = wait_for(futures, timeout=timeout, return_when=FIRST_EXCEPTION)
        return [future for future in futures if future in done]

    def get(self, future: Future) -> Any:
        return future.result()

    def shutdown(self) -> None:
        for thread in self._threads.values():
            thread.shutdown(wait=True, cancel_futures=True)
        self._threads.clear()
        close_roles(self._roles)
