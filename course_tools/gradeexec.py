"""nbgrader preprocessors that keep grading alive, and honest, whatever a submission does.

``GuardedExecute`` replaces nbgrader's ``Execute`` in ``Autograde.autograde_preprocessors``:

* a per-notebook time limit: cells after the deadline are marked, not run;
* a cell that runs past its time limit is interrupted; if it has not stopped ``interrupt_grace``
  seconds later (it ignores SIGINT, or catches ``KeyboardInterrupt`` and goes on), its kernel is
  killed, exactly as if it had died;
* a dying or killed kernel costs one cell: the cell is marked, a fresh kernel replays the earlier
  cells to rebuild their state, and grading goes on. **A replayed cell keeps the outputs of its
  first run**, so tests that passed before the cell that was stopped never lose their points, however
  the replay goes (even when it runs into the notebook's deadline);
* the output a cell may produce while it runs is capped;
* **hold for review**: student code must not change how later cells run or are judged. Cells that the
  static scan found doing so carry ``metadata.course_hold`` (set by the grader, never by the student);
  a runtime probe (``PROBE_SOURCE``) compares, after every cell, IPython's input and AST transformers,
  exception handlers and traceback display, event callbacks, the kernel's handlers, trace and profile
  hooks, builtins, the names that locked cells bound, and the functions of the modules tests use, with
  what they were after the previous cell. Every graded test cell that runs after the first such
  change gets a ``ReviewHold`` error (nbgrader scores it 0) naming the change, until a person has
  looked (``course grade --trust STUDENT`` regrades without holds). Tests that ran before keep their
  points.

``CapOutput`` caps stored outputs in characters (nbgrader's ``LimitOutput`` counts lines only).
"""

from __future__ import annotations

import ast
import json
import marshal
import os
import re
import secrets
from pathlib import Path
from queue import Empty
from time import monotonic

from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from nbgrader.utils import is_grade
from traitlets import Bool, Integer

from course_tools.terminal import utf8_safe

KERNEL_DIED = "KernelDied"
NOTEBOOK_TIMEOUT = "NotebookTimeout"
CELL_STUCK = "CellTimeoutError"
REVIEW_HOLD = "ReviewHold"
HIDDEN_FAILED = "HiddenTestFailure"
HIDDEN_BLOCK = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS[ \t]*\n(.*?)^[ \t]*### END HIDDEN TESTS[ \t]*(?:\n|\Z)", re.S | re.M)
PROBE_MODULE = "_course_probe"
# A kernel already started (and probed) for the next student, handed to GuardedExecute by the grading
# worker (course_tools.grading); used for one student only, then shut down like any other.
SPARE_KERNEL = None

# Installed in every grading kernel before the first cell. ``check(names, compare)`` returns the
# list of things that changed since the last call (when ``compare``) and takes a new baseline.
# Values are compared by identity only: no student object's __eq__ or __getattr__ ever runs.
PROBE_SOURCE = r'''
def _install():
    import builtins, importlib, sys, threading, types
    # watched from the start; torch._dynamo rebinds torch.manual_seed when first imported (seed_everything
    # and many torch functions import it), so it is imported before the first fingerprint
    for name in ("torch", "torch.nn.functional", "torch.testing", "torch._dynamo", "math"):
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    ip = get_ipython()
    shell_type = type(ip)
    transient = {"_", "__", "___", "exit", "quit", "get_ipython", "display", "__IPYTHON__", "dreload"}
    shadowable = {k for k in vars(builtins) if not k.startswith("_")} - transient
    methods = ("run_cell", "run_cell_async", "run_ast_nodes", "run_code", "showtraceback", "_showtraceback",
               "showsyntaxerror", "showindentationerror", "transform_cell", "transform_ast", "should_run_async",
               "user_expressions", "ex", "ev", "safe_execfile", "run_line_magic", "run_cell_magic")

    def ids(values):
        return tuple(id(v) for v in values)

    def callables(namespace):
        return {k: id(v) for k, v in list(namespace.items())
                if isinstance(v, (types.FunctionType, types.BuiltinFunctionType, types.ModuleType, type))
                or callable(v) and not isinstance(v, (int, float, str, bytes))}

    def overridden(obj):
        own = vars(obj) if hasattr(obj, "__dict__") else {}
        return tuple(sorted((k, id(v)) for k, v in own.items() if callable(getattr(type(obj), k, None))))

    def hooks():
        manager = ip.input_transformer_manager
        kernel = getattr(ip, "kernel", None)
        found = {
            "sys.settrace": id(sys.gettrace()), "sys.setprofile": id(sys.getprofile()),
            "threading.settrace": id(getattr(threading, "_trace_hook", None)),
            "threading.setprofile": id(getattr(threading, "_profile_hook", None)),
            "sys.displayhook": id(sys.displayhook), "sys.excepthook": id(sys.excepthook),
            "sys.meta_path": ids(sys.meta_path), "sys.path_hooks": ids(sys.path_hooks),
            "input_transformers_cleanup": ids(ip.input_transformers_cleanup),
            "input_transformers_post": ids(ip.input_transformers_post),
            "ast_transformers": ids(ip.ast_transformers),
            "input_transformer_manager": (id(manager), ids(manager.cleanup_transforms),
                                          ids(manager.line_transforms), ids(manager.token_transformers)),
            "custom exception handler": (ids(ip.custom_exceptions), id(ip.CustomTB)),
            "event callbacks": tuple((name, ids(cbs)) for name, cbs in sorted(ip.events.callbacks.items())),
            "shell methods": tuple((m, id(getattr(shell_type, m, None)), m in vars(ip)) for m in methods),
            "shell.displayhook": (id(ip.displayhook), id(ip.display_pub), id(ip.compile), id(ip.InteractiveTB),
                                  id(ip.SyntaxTB), id(ip.builtin_trap), id(ip.display_trap)),
            "shell internals": tuple((id(obj), overridden(obj),
                                      tuple((k, id(v)) for k, v in sorted(vars(type(obj)).items()) if callable(v)))
                                     for obj in (ip.compile, manager, ip.displayhook, ip.display_pub,
                                                 ip.InteractiveTB, ip.builtin_trap, ip.display_trap)),
            "user_ns.__builtins__": id(ip.user_ns.get("__builtins__")),
        }
        torch = sys.modules.get("torch")
        if torch is not None:
            stack = getattr(torch._C, "_len_torch_function_stack", None)
            dispatch = getattr(torch._C, "_len_torch_dispatch_stack", None)
            found["torch function modes"] = (stack() if stack else None, dispatch() if dispatch else None,
                                             str(torch.get_default_dtype()))
        if kernel is not None:
            found["kernel handlers"] = (id(type(kernel).do_execute), "do_execute" in vars(kernel),
                                        tuple(sorted((k, id(v)) for k, v in kernel.shell_handlers.items())),
                                        id(kernel.session), id(type(kernel.session).send), "send" in vars(kernel.session))
        return found

    def data(names):
        found = {"builtins": {k: id(v) for k, v in vars(builtins).items() if k not in transient}}
        ns = ip.user_ns
        missing = object()
        found["names"] = {n: id(ns.get(n, missing)) if n in ns else None for n in names}
        found["built-ins shadowed in user_ns"] = tuple(sorted(k for k in ns if k in shadowable))
        watched = [m for m in ("torch", "torch.nn", "torch.nn.functional", "torch.testing", "math", "numpy")
                   if m in sys.modules]
        watched += [m for m in list(sys.modules) if m == "course_utils" or m.startswith("course_utils.")]
        for name in watched:
            found["module " + name] = callables(vars(sys.modules[name]))
        torch = sys.modules.get("torch")
        if torch is not None:
            for cls in (torch.Tensor, torch.nn.Module, torch.nn.Parameter):
                found["class " + cls.__name__] = callables(dict(vars(cls)))
        return found

    state = {}
    # what the course's own cells legitimately change: names they bind, and the post-execute callback
    # that matplotlib's inline backend registers the first time a locked cell draws a figure
    # and the libraries they import (transformers adds nn.Module.smart_apply and an import hook): after a
    # locked cell, functions that existed are compared, added ones are not
    LOCKED_MAY_CHANGE = {"names", "built-ins shadowed in user_ns", "event callbacks", "sys.meta_path",
                         "sys.path_hooks", "builtins"}

    def diff(old, new, label, new_keys=True):
        if old == new:
            return []
        if isinstance(old, dict) and isinstance(new, dict):
            changed = [k for k in old if k in new and old[k] != new[k] or k not in new]
            if new_keys and (label.startswith("class ") or label in ("names",)):
                changed += [k for k in new if k not in old]
            if label == "names":
                changed = [k for k in changed if old.get(k) is not None]
            return [f"{label}: {k}" for k in sorted(changed)[:5]]
        return [label]

    def check(names, compare=True, locked=False):
        now_hooks, now_data = hooks(), data(names)
        changes = []
        if compare and state:
            for key, value in now_hooks.items():
                if value is not None and state["hooks"].get(key) != value and not (locked and key in LOCKED_MAY_CHANGE):
                    changes.append(key)
            for key, value in now_data.items():
                if key in state["data"] and not (locked and key in LOCKED_MAY_CHANGE):
                    changes += diff(state["data"][key], value, key, new_keys=not locked)
        state["hooks"], state["data"] = now_hooks, now_data
        return changes

    def hidden(path):
        """Run a hidden test the grader compiled: its code object is read from a one-shot file (removed
        before it runs), so its text is never in the kernel: not in In, the history, linecache or a frame."""
        import marshal, os
        with open(path, "rb") as handle:
            code = marshal.loads(handle.read())
        os.remove(path)
        try:
            exec(code, ip.user_ns)
        except KeyboardInterrupt:
            raise KeyboardInterrupt() from None  # the grader's interrupt; nothing of the test in it
        except BaseException as error:
            raise HiddenTestFailure(f"{type(error).__name__}: {error}"[:2000]) from None

    class HiddenTestFailure(Exception):
        """A hidden test failed (the message is for the instructor; feedback shows only its kind)."""

    module = types.ModuleType("''' + PROBE_MODULE + r'''")
    module.check = check
    module.hidden = hidden
    sys.modules[module.__name__] = module

_install()
del _install
'''


def split_hidden(source: str) -> list[tuple[bool, str]]:
    """A test cell's source as (hidden, text) parts in order: the hidden blocks between nbgrader's
    markers, and the visible code around them."""
    parts, at = [], 0
    for match in HIDDEN_BLOCK.finditer(source):
        parts.append((False, source[at:match.start()]))
        parts.append((True, match.group(1)))
        at = match.end()
    parts.append((False, source[at:]))
    return [(hidden, text) for hidden, text in parts if text or hidden]


def hidden_verdict(outputs: list) -> list:
    """What a hidden block's run may leave in the notebook: its error (the kind is kept for feedback, the
    message for the instructor) and a fixed note when something wrote to stderr (nbgrader scores that 0).
    Whatever else it printed or displayed is dropped, so it can never reach feedback."""
    kept = []
    if any(o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outputs):
        kept.append(NotebookNode(output_type="stream", name="stderr", text="[a hidden test wrote to stderr]\n"))
    for output in outputs:
        if output.get("output_type") == "error":
            name = output.get("ename") if output.get("ename") in ("KeyboardInterrupt", HIDDEN_FAILED) else HIDDEN_FAILED
            kept.append(_error(name, str(output.get("evalue", ""))[:2000]))
    return kept


def _error(ename: str, evalue: str) -> NotebookNode:
    return NotebookNode(output_type="error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def output_size(output: dict) -> int:
    """Characters an output would add to the notebook (text, data and traceback)."""
    size = len(output.get("text", "") if isinstance(output.get("text", ""), str) else "".join(output["text"]))
    for value in output.get("data", {}).values():
        size += len(value) if isinstance(value, str) else len(str(value))
    size += sum(len(line) for line in output.get("traceback", []))
    size += len(str(output.get("evalue", ""))) + len(str(output.get("ename", "")))
    return size


def clean_text(value):
    """``value`` (an output, recursively) with every string made writable as UTF-8: a lone surrogate
    a student printed (``'\\ud800'``) becomes U+FFFD instead of breaking the grader when it saves."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, dict):
        for key in list(value):
            value[key] = clean_text(value[key])
        return value
    if isinstance(value, list):
        return [clean_text(item) for item in value]
    return value


def bound_names(source: str) -> set[str]:
    """Names a cell binds at module level (what later cells may rely on)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        else:
            names.update(n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


def errors_first(outputs: list) -> list:
    """A graded cell's outputs with errors and stderr first, so that no earlier value can outvote them.

    nbgrader's ``determine_grade`` stops at the first error, stderr stream or ``execute_result``; a
    student function that calls ``sys.displayhook`` inside a test would otherwise win full points
    before the test's own error.
    """
    bad = [o for o in outputs if o.get("output_type") == "error"
           or o.get("output_type") == "stream" and o.get("name") == "stderr"]
    return bad + [o for o in outputs if o not in bad] if bad else outputs


def _is_student(cell: NotebookNode) -> bool:
    meta = cell.get("metadata", {})
    return bool(meta.get("course_added") or meta.get("nbgrader", {}).get("solution"))


def probe_file(folder: Path) -> Path:
    """Write the probe as a file a kernel runs at start-up (IPKernelApp.exec_files) and return it."""
    path = Path(folder) / "course_probe.py"
    path.write_text(PROBE_SOURCE)
    return path


class GuardedExecute(Execute):
    """nbgrader's Execute with a deadline, interrupts that cannot be resisted, replay and review holds."""

    notebook_timeout = Integer(600, help="seconds for the whole notebook").tag(config=True)
    max_cell_output_chars = Integer(200_000, help="characters kept per cell while it runs").tag(config=True)
    max_restarts = Integer(3, help="kernel deaths survived before the rest is skipped").tag(config=True)
    interrupt_grace = Integer(10, help="seconds a cell gets to stop after an interrupt before its kernel "
                                       "is killed").tag(config=True)
    probe = Bool(True, help="check after every cell that student code left the kernel's machinery "
                            "alone").tag(config=True)
    holds = Bool(True, help="score 0 the tests that ran after student code changed how cells run "
                            "(False: an instructor has reviewed the submission)").tag(config=True)
    probe_timeout = Integer(20, help="seconds to wait for the probe's answer").tag(config=True)

    # ------------------------------------------------------------------ nbclient hooks

    def handle_comm_msg(self, outs, msg, cell_index):  # noqa: D102 - nbclient hook
        """Ignore widget and comm messages: grading needs no widget state, and nbclient's own handling
        fails (``KeyError: '_model_module'``) on a comm message a submission crafted."""
        return None

    def output(self, outs, msg, display_id, cell_index):  # noqa: D102 - nbclient hook
        if sum(output_size(o) for o in outs) > self.max_cell_output_chars:
            if not any(o.get("name") == "stderr" and "[output truncated" in o.get("text", "") for o in outs):
                outs.append(NotebookNode(output_type="stream", name="stderr",
                                         text=f"\n[output truncated at {self.max_cell_output_chars:,} characters]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    async def _async_handle_timeout(self, timeout, cell=None):  # noqa: D102 - nbclient hook
        """Interrupt; wait ``interrupt_grace`` s for the cell to stop; else give up on the kernel."""
        self.log.warning("a cell ran past %s s: interrupting it", timeout)
        self._timed_out = True  # the grader's own record: never read back from what a cell printed
        await ensure_async(self.km.interrupt_kernel())
        deadline = monotonic() + self.interrupt_grace
        while (left := deadline - monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Empty:
                break
            if msg.get("msg_type") == "execute_reply":
                return msg  # it stopped: the reply carries the KeyboardInterrupt
        raise CellTimeoutError.error_from_timeout_and_cell("the cell ignored the interrupt", timeout, cell)

    # ------------------------------------------------------------------ the probe

    async def _async_ask(self, code: str, expressions: dict | None = None) -> dict | None:
        msg_id = self.kc.execute(code, silent=True, store_history=False, user_expressions=expressions or {},
                                 allow_stdin=False)
        deadline = monotonic() + self.probe_timeout
        while (left := deadline - monotonic()) > 0:
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=left))
            except Empty:
                return None
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                return msg["content"]
        return None

    def _ask(self, code: str, expressions: dict | None = None) -> dict | None:
        """Run ``code`` silently in the kernel; return the reply's content (None: no answer in time)."""
        return run_sync(self._async_ask)(code, expressions)

    def _install_probe(self) -> None:
        if self.probe:
            # a grading kernel runs the probe at start-up (``probe_file``, sandbox --probe): only ask
            have = self._ask("", {"probe": f"{PROBE_MODULE!r} in __import__('sys').modules"})
            if have and have.get("user_expressions", {}).get("probe", {}).get("data", {}).get("text/plain") == "True":
                self._check([], student=False)
                return
            reply = self._ask(PROBE_SOURCE)
            if not reply or reply.get("status") != "ok":
                self.log.warning("could not install the grading probe: %s", reply)
            self._check([], student=False)  # the baseline, taken as every later check is: between cells

    def _check(self, names: list[str], student: bool) -> list[str]:
        """What changed in the kernel's machinery since the last check (nothing for an honest cell)."""
        if not self.probe:
            return []
        call = f"__import__({PROBE_MODULE!r}).check({sorted(names)!r}, True, {not student})"
        reply = self._ask("", {"probe": call})
        if not reply or reply.get("status") != "ok":
            return ["the grader's probe got no answer"]
        result = reply.get("user_expressions", {}).get("probe", {})
        if result.get("status") != "ok":
            return [f"the grader's probe failed ({result.get('ename', 'no result')})"]
        try:
            changes = ast.literal_eval(result.get("data", {}).get("text/plain", "[]"))
        except (ValueError, SyntaxError):
            return ["the grader's probe gave an unreadable answer"]
        return [str(c) for c in changes] if isinstance(changes, list) else ["the grader's probe was replaced"]

    # ------------------------------------------------------------------ running

    def _run(self, cell: NotebookNode, index: int, deadline: float) -> str:
        remaining = deadline - monotonic()
        if remaining < 1:
            cell.outputs = [_error(NOTEBOOK_TIMEOUT, f"not run: the notebook's time limit of {self.notebook_timeout} s was reached")]
            return "skipped"
        limit = max(1, int(min(self.timeout or remaining, remaining)))
        cut_by_deadline = not self.timeout or remaining < self.timeout  # the notebook's limit, not the cell's
        self.timeout_func = lambda _cell: limit
        self._timed_out = False
        try:
            self._execute(cell, index)
        except DeadKernelError:
            return "died"
        except CellTimeoutError:
            cell.outputs.append(_error(CELL_STUCK, f"the cell ran past its time limit of {limit} s and did not stop "
                                                   f"when interrupted; its kernel was stopped and the notebook "
                                                   f"continued in a fresh kernel"))
            return "stuck"
        if self._timed_out:  # interrupted by the grader (not a KeyboardInterrupt the cell raised itself)
            if cut_by_deadline:
                cell.outputs.append(_error(NOTEBOOK_TIMEOUT, f"stopped: the notebook's time limit of "
                                                             f"{self.notebook_timeout} s was reached in this cell"))
                return "late"
            return "timeout"
        return "ok"

    def _execute(self, cell: NotebookNode, index: int) -> None:
        """Run one cell. A graded cell's hidden tests never reach the kernel as text: the visible part
        runs as the cell; each hidden block is compiled here and handed over as a code object
        (``_run_hidden``). Only its verdict comes back: an error, or a note that it wrote to stderr."""
        source = cell.source
        parts = split_hidden(source) if is_grade(cell) else []
        if not any(hidden for hidden, _text in parts):
            self.execute_cell(cell, index, store_history=True)
            return
        outputs: list = []
        count, running = None, None  # running: the part whose outputs are not yet in ``outputs``
        try:
            last = max(i for i, (_hidden, text) in enumerate(parts) if text.strip())
            for i, (hidden, text) in enumerate(parts):
                if not text.strip():
                    continue
                running = hidden
                if hidden:
                    self._run_hidden(cell, index, text)
                else:
                    # a part followed by more of the cell shows no value, as inside the whole cell
                    cell.source = text if i == last else text.rstrip() + "\npass"
                    self.execute_cell(cell, index, store_history=True)
                    count = cell.execution_count if count is None else count
                outputs += hidden_verdict(cell.outputs) if hidden else cell.outputs
                running = None
                if any(o.get("output_type") == "error" for o in cell.outputs):
                    break  # as in one cell: nothing after an error runs
        finally:  # also when the kernel died or the cell was stuck: keep what each part left
            if running is not None:
                outputs += hidden_verdict(cell.outputs) if running else cell.outputs
            cell.source = source
            cell.outputs = outputs
            cell.execution_count = count

    def _run_hidden(self, cell: NotebookNode, index: int, text: str) -> None:
        code = compile(text, "<hidden test>", "exec", dont_inherit=True)
        from course_tools.sandbox import inside_runtime

        folder = Path(self.km.connection_file).parent if getattr(self.km, "connection_file", None) else Path(".")
        name = f"h-{secrets.token_hex(8)}"
        path = inside_runtime(folder) / name  # the kernel reads it as folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(marshal.dumps(code))
        cell.source = f"__import__({PROBE_MODULE!r}).hidden({str(folder / name)!r})"
        try:
            self.execute_cell(cell, index, store_history=False)
        finally:
            if path.exists():
                path.unlink()

    def preprocess(self, nb, resources=None, km=None):  # noqa: D102 - nbconvert API
        from nbclient import NotebookClient

        global SPARE_KERNEL
        if km is None and SPARE_KERNEL is not None:  # started for this student while the last one ran
            km, SPARE_KERNEL = SPARE_KERNEL, None
        NotebookClient.__init__(self, nb, km)
        self.shutdown_kernel = "immediate"  # a kernel may be stuck in a cell: never wait for it
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        deadline = monotonic() + self.notebook_timeout
        cells = self.nb.cells
        order = [i for i, c in enumerate(cells) if c.cell_type == "code"]
        first: dict[int, tuple] = {}  # index -> (outputs, execution_count) of its first run: the verdict
        killers: set[int] = set()
        hold: dict[int, str] = {i: str(cells[i].metadata["course_hold"]) for i in order
                                if cells[i].get("metadata", {}).get("course_hold")}
        protected = set(self.nb.metadata.get("course_protected", []))  # set by the grader
        during: set[int] = set()
        # what the guards did, by cell: the row's reason is written from this record only, never from
        # outputs, which a student's code can fill with anything (an error named KernelDied included)
        events: dict[str, list[int]] = {"died": [], "stuck": [], "late": [], "timeout": [], "abandoned": []}
        while True:
            stopped = None
            names: set[str] = set()  # what the locked cells that ran so far have bound
            with self.setup_kernel(cleanup_kc=True):  # every kernel, a spare too, is shut down after use
                info = self.wait_for_reply(self.kc.kernel_info())
                self.nb.metadata["language_info"] = info["content"]["language_info"]
                self._install_probe()
                for index in order:
                    if index in killers:
                        continue
                    cell = cells[index]
                    status = self._run(cell, index, deadline)
                    if index in first:  # replayed to rebuild state: the first run's verdict stands
                        cell.outputs, cell.execution_count = first[index]
                    else:
                        first[index] = (cell.outputs, cell.execution_count)
                        kind = "late" if status == "skipped" else status
                        if kind in events:
                            events[kind].append(index)
                    if status in ("died", "stuck"):
                        stopped = index
                        break
                    if status == "skipped":
                        continue
                    student = _is_student(cell)
                    if not student:
                        names |= bound_names(cell.source) & protected
                    changes = self._check(names, student)
                    if changes and index not in hold:
                        hold[index] = ("cell changed how later cells run: " if student else
                                       "something changed how cells run during this cell: ") + ", ".join(changes[:4])
                        if not student:
                            during.add(index)  # student code ran inside this locked cell: it is held too
            if stopped is None:
                break
            killers.add(stopped)
            if status == "died":
                cells[stopped].outputs = [_error(KERNEL_DIED, "the kernel died while running this cell "
                                                 "(a crash, os._exit or the memory limit); it was skipped and "
                                                 "the notebook continued in a fresh kernel")]
                first[stopped] = (cells[stopped].outputs, None)
            self.log.warning("kernel lost in cell %s (%s)", stopped, status)
            if len(killers) > self.max_restarts:
                for index in order:
                    if index > stopped and index not in first:
                        cells[index].outputs = [_error(KERNEL_DIED, "not run: the kernel died too many times")]
                        events["abandoned"].append(index)
                break
        for index in order:  # nbgrader scores a cell by its first error, stderr or value: errors first
            if is_grade(cells[index]):
                cells[index].outputs = errors_first(cells[index].outputs)
        self.hold_points = dict(hold)  # every cell after which the probe saw a change (for reports and tests)
        def key(i: int) -> str:
            return cells[i].get("metadata", {}).get("nbgrader", {}).get("grade_id") or cells[i].get("id") or str(i)
        self.nb.metadata["course_guards"] = {kind: [key(i) for i in found] for kind, found in events.items()}
        if hold and self.holds:
            self._hold_tests(cells, order, hold, during)
        self.nb.metadata.pop("widgets", None)  # no widget state is kept (``handle_comm_msg``)
        for cell in cells:
            if cell.cell_type == "code":
                cell.outputs = clean_text(cell.outputs)
        return self.nb, self.resources

    def _hold_tests(self, cells, order: list[int], hold: dict[int, str], during: set[int]) -> None:
        start = min(hold)
        first_held = start if start in during else start + 1
        origin = cells[start].get("metadata", {}).get("nbgrader", {}).get("grade_id") or cells[start].get("id")
        self.nb.metadata["course_hold"] = {"cell": origin, "reason": hold[start], "tests": 0}
        for index in order:
            meta = cells[index].get("metadata", {}).get("nbgrader", {})
            if index >= first_held and meta.get("grade") and not meta.get("solution"):
                self.nb.metadata["course_hold"]["tests"] += 1
                cells[index].outputs.append(_error(
                    REVIEW_HOLD, f"not scored until an instructor reviews this submission: cell {origin} "
                                 f"({hold[start]}) ran before or during this test"))


class CapOutput(Preprocessor):
    """Cap stored outputs in characters, keeping the start of each output: per cell (``max_chars``), per
    error value, and for the whole notebook (``max_total_chars``: many small outputs, each under its
    cell's cap, add up too). What was cut is recorded in ``metadata.course_output_capped`` for the row."""

    enabled = Bool(True).tag(config=True)
    max_chars = Integer(20_000, help="characters kept per cell").tag(config=True)
    max_total_chars = Integer(1_000_000, help="characters kept over the whole notebook").tag(config=True)
    max_error_chars = Integer(2_000, help="characters kept of an error's value").tag(config=True)

    def preprocess(self, nb, resources):  # noqa: D102 - nbconvert API
        self._left, self._cut = self.max_total_chars, 0
        nb, resources = super().preprocess(nb, resources)
        if self._cut:
            nb.metadata["course_output_capped"] = {"characters": self._cut, "limit": self.max_total_chars}
        return nb, resources

    def preprocess_cell(self, cell, resources, index):  # noqa: D102 - nbconvert API
        if cell.cell_type != "code":
            return cell, resources
        budget = min(self.max_chars, max(0, getattr(self, "_left", self.max_total_chars)))
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                value = str(output.get("evalue", ""))
                if len(value) > self.max_error_chars:
                    output["evalue"] = value[:self.max_error_chars] + f" [... {len(value):,} characters]"
                output["traceback"] = [line[:2000] for line in output.get("traceback", [])[-20:]]
            size = output_size(output)
            if size <= budget:
                kept.append(output)
                budget -= size
                self._left = getattr(self, "_left", self.max_total_chars) - size
                continue
            self._cut = getattr(self, "_cut", 0) + size - max(0, budget)
            if output.get("output_type") == "stream":
                text = output["text"] if isinstance(output["text"], str) else "".join(output["text"])
                output["text"] = text[:max(0, budget)] + f"\n[output truncated: {size:,} characters]\n"
                kept.append(output)
            elif output.get("output_type") == "error":
                output["traceback"] = [line[:500] for line in output.get("traceback", [])[-5:]]
                output["evalue"] = str(output.get("evalue", ""))[:500]
                kept.append(output)  # an error always stays: it decides the cell's grade
            else:
                # stdout, not stderr: a note of the grader's never costs a test its points
                kept.append(NotebookNode(output_type="stream", name="stdout",
                                         text=f"[an output of {size:,} characters was removed]\n"))
            self._left = getattr(self, "_left", self.max_total_chars) - max(0, budget)
            budget = 0
        cell.outputs = kept
        return cell, resources


def held_reason(nb: NotebookNode) -> str:
    """The review hold recorded in a graded notebook ('' when none)."""
    hold = nb.get("metadata", {}).get("course_hold")
    return json.dumps(hold) if hold and not isinstance(hold, dict) else (
        f"tests after cell {hold['cell']} held for review ({hold['reason']})" if hold else "")
