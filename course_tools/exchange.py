"""nbgrader's default exchange, hardened for a class that shares one machine (a JupyterHub).

nbgrader's own classes are kept and configured in through its extension point
(`c.ExchangeFactory.collect = "course_tools.exchange.OwnerCheckedCollect"`, and so on; the
course's `nbgrader_config.py` sets all four). What each adds:

* `OwnerCheckedCollect` refuses a submission unless the folder and everything in it belongs
  to the Unix user its name claims (nbgrader's own collect only logs "cheating attempt?" and
  collects it). A refused folder is named in an error, nothing of it is copied, the named
  student's own latest submission is collected instead, and the command exits 1 once every
  other student is collected. The copy itself re-checks each file through the descriptor it
  reads from, so a file swapped in after the check is refused too, and the earlier collected
  copy is replaced only once the new one is complete.
* `PrivateSubmit` closes a submission's folder to other students (nbgrader leaves it 0777:
  whoever learns its name can read and replace the files; here it is 0770, its group the
  instructors' group that the set-gid inbound folder gives it).
* `PrivateReleaseFeedback` keeps the released feedback folder unlistable (0711: a page is
  found only by the hash of its submission's secret) and each page read-only, and puts one
  copy of the pages' MathJax there (`_mathjax/`, readable by all: it is MathJax's code).
* `MathJaxFetchFeedback` links a student's fetched feedback to that copy, so that the page's
  equations typeset offline where the student opens it.

`prepare_exchange` lays out the exchange with these permissions; `audit_exchange` lists what
differs from them.
"""

from __future__ import annotations

import glob
import grp
import os
import pwd
import shutil
import stat
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect
from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback
from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback
from nbgrader.exchange.default.submit import ExchangeSubmit
from nbgrader.utils import ignore_patterns

from course_tools.feedback import MATHJAX_DIR

# The layout nbgrader documents, with the root sticky so that no student can rename or remove
# a course folder it did not create (nbgrader's release makes the root 0777, which allows both).
ROOT_MODE = 0o1777
COURSE_MODE = 0o755
OUTBOUND_MODE = 0o755
INBOUND_MODE = 0o2733   # students may write and enter, not list; set-gid: submissions get its group
FEEDBACK_MODE = 0o711   # pages are found by hash, never listed
SUBMISSION_MODE = 0o770


class SubmissionRefused(Exception):
    """A submission folder holds something that is not its named student's."""


@dataclass(frozen=True)
class Refusal:
    folder: str
    student: str
    reason: str


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "unknown user"


def _check_owner(what: str, st: os.stat_result, uid: int, student: str) -> None:
    if st.st_uid != uid:
        raise SubmissionRefused(
            f"{what} is owned by {_owner_name(st.st_uid)} (uid {st.st_uid}), not by {student} (uid {uid})")


def copy_owned_tree(src: str, dest: str | None, uid: int, student: str, *, ignore=None,
                    max_bytes: float | None = None) -> int:
    """Copy SRC to DEST (or only check it, DEST None) if every entry belongs to UID; return bytes.

    Raise SubmissionRefused at the first entry that is a link, a device, a pipe, writable by
    others, or owned by anyone else. Every entry is opened without following links and checked
    through the descriptor it is read from, so a swap after a check cannot slip through.
    """
    total = 0
    dir_flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        top = os.open(src, dir_flags)
    except OSError as err:
        raise SubmissionRefused(f"the folder is not a plain folder ({err.strerror})") from None

    def walk(dfd: int, rel: str, out: str | None, is_top: bool) -> None:
        nonlocal total
        st = os.fstat(dfd)
        _check_owner(f"{rel or 'the folder'}", st, uid, student)
        if not is_top and st.st_mode & stat.S_IWOTH:
            raise SubmissionRefused(f"{rel} is writable by everyone")
        if out is not None:
            os.mkdir(out, 0o700)
        names = sorted(os.listdir(dfd))
        skipped = set(ignore(os.path.join(src, rel), names)) if ignore else set()
        for name in names:
            if name in skipped:
                continue
            path = os.path.join(rel, name) if rel else name
            lst = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            if stat.S_ISLNK(lst.st_mode):
                raise SubmissionRefused(f"{path} is a symbolic link")
            if stat.S_ISDIR(lst.st_mode):
                sub = os.open(name, dir_flags, dir_fd=dfd)
                try:
                    walk(sub, path, os.path.join(out, name) if out is not None else None, False)
                finally:
                    os.close(sub)
            elif stat.S_ISREG(lst.st_mode):
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dfd)
                try:
                    fst = os.fstat(fd)
                    if not stat.S_ISREG(fst.st_mode):
                        raise SubmissionRefused(f"{path} is not a regular file")
                    _check_owner(path, fst, uid, student)
                    if fst.st_mode & stat.S_IWOTH:
                        raise SubmissionRefused(f"{path} is writable by everyone")
                    total += fst.st_size
                    if max_bytes is not None and total > max_bytes:
                        raise SubmissionRefused(f"the folder is larger than {int(max_bytes)} bytes")
                    if out is not None:
                        target = os.path.join(out, name)
                        with os.fdopen(os.dup(fd), "rb") as reader, open(target, "xb") as writer:
                            shutil.copyfileobj(reader, writer)
                        os.chmod(target, 0o644)
                        os.utime(target, ns=(fst.st_atime_ns, fst.st_mtime_ns))
                finally:
                    os.close(fd)
            else:
                raise SubmissionRefused(f"{path} is not a file or a folder")
        if out is not None:
            os.chmod(out, 0o755)

    try:
        walk(top, "", dest, True)
    finally:
        os.close(top)
    return total


class OwnerCheckedCollect(ExchangeCollect):
    """nbgrader's collect, refusing every submission not wholly owned by the student it names."""

    def _unix_uid(self, student: str) -> int | None:
        try:
            return pwd.getpwnam(student).pw_uid
        except KeyError:
            return None

    def _check(self, record: dict, dest: str | None = None) -> None:
        student = record["username"]
        uid = self._unix_uid(student)
        if uid is None:
            raise SubmissionRefused(f"there is no Unix user named {student}")
        copy_owned_tree(os.path.join(self.inbound_path, record["filename"]), dest, uid, student,
                        ignore=ignore_patterns(exclude=self.coursedir.ignore, include=self.coursedir.include,
                                               max_file_size=self.coursedir.max_file_size, log=self.log),
                        max_bytes=1000 * self.coursedir.max_dir_size)

    def _refuse(self, record: dict, reason: str) -> None:
        self.refused.append(Refusal(record["filename"], record["username"], reason))
        self.log.error("REFUSED %s: it names %s but %s; nothing of it was collected",
                       os.path.join(self.inbound_path, record["filename"]), record["username"], reason)

    def init_src(self):
        self.refused: list[Refusal] = []
        super().init_src()  # the checks on the course and inbound folders, and the due date
        pattern_owner = self.coursedir.student_id if self.coursedir.student_id else "*"
        pattern = os.path.join(self.inbound_path, f"{pattern_owner}+{self.coursedir.assignment_id}+*")
        records = []
        for path in glob.glob(pattern):
            record = self._path_to_record(path)
            try:
                self._check(record)
            except SubmissionRefused as err:
                self._refuse(record, str(err))
                continue
            records.append(record)
        by_student = defaultdict(list)
        for record in records:
            by_student[record["username"]].append(record)
        self.src_records = []
        for student_records in by_student.values():
            ordered = self._sort_by_timestamp(student_records)
            if self.duedate is not None and self.before_duedate:
                on_time = [r for r in ordered if r["timestamp"] <= self.duedate]
                self.src_records.append((on_time or ordered)[0])
            else:
                self.src_records.append(ordered[0])

    def copy_files(self):
        if not self.src_records:
            self.log.warning("No submissions of '%s' for course '%s' to collect",
                             self.coursedir.assignment_id, self.coursedir.course_id)
        for record in self.src_records:
            student = record["username"]
            dest = self.coursedir.format_path(self.coursedir.submitted_directory, student, self.coursedir.assignment_id)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            if os.path.isdir(dest):
                existing = self.coursedir.get_existing_timestamp(dest)
                newer = self.update and (existing is None or record["timestamp"] > existing)
                changed = self.before_duedate and existing != record["timestamp"]
                if not (newer or changed):
                    self.log.info("%s: %s %s", "No newer submission to collect" if self.update else
                                  "Submission already exists, use --update to update", student,
                                  self.coursedir.assignment_id)
                    continue
            staging = tempfile.mkdtemp(prefix=".collecting-", dir=os.path.dirname(dest))
            try:
                self._check(record, os.path.join(staging, "new"))
            except SubmissionRefused as err:
                shutil.rmtree(staging)
                self._refuse(record, str(err))
                continue
            if os.path.isdir(dest):
                self.log.info("Updating submission: %s %s", student, self.coursedir.assignment_id)
                os.rename(dest, os.path.join(staging, "old"))
            else:
                self.log.info("Collecting submission: %s %s", student, self.coursedir.assignment_id)
            os.rename(os.path.join(staging, "new"), dest)
            shutil.rmtree(staging)

    def start(self):
        super().start()
        if self.refused:
            self.fail("refused {} submission(s) not owned by the student they name: {}".format(
                len(self.refused), "; ".join(f"{r.folder} ({r.reason})" for r in self.refused)))


class PrivateSubmit(ExchangeSubmit):
    """nbgrader's submit, leaving the submission folder closed to everyone but its group."""

    def copy_files(self):
        super().copy_files()
        dest = os.path.join(self.inbound_path, self.assignment_filename)
        if os.stat(dest).st_gid == os.stat(self.inbound_path).st_gid:
            os.chmod(dest, SUBMISSION_MODE)
        else:
            self.log.warning("The inbound folder is not set-gid to the instructors' group: %s stays open (0777)", dest)


class PrivateReleaseFeedback(ExchangeReleaseFeedback):
    """nbgrader's release_feedback, keeping the feedback folder unlistable and its pages read-only."""

    def init_dest(self):
        super().init_dest()
        if stat.S_IMODE(os.stat(self.dest_path).st_mode) != FEEDBACK_MODE:
            self.log.warning("Feedback folder %s could be listed: setting it to 0711", self.dest_path)
            os.chmod(self.dest_path, FEEDBACK_MODE)

    def copy_files(self):
        super().copy_files()
        for entry in os.scandir(self.dest_path):
            if entry.is_file(follow_symlinks=False) and entry.stat().st_uid == os.getuid():
                os.chmod(entry.path, 0o644)
        # the pages' MathJax, once, for every student's fetch_feedback (a link to it: see MathJaxFetchFeedback)
        feedback_root = os.path.normpath(self.coursedir.format_path(self.coursedir.feedback_directory, ".", "."))
        source, dest = os.path.join(feedback_root, MATHJAX_DIR), os.path.join(self.dest_path, MATHJAX_DIR)
        if os.path.isfile(os.path.join(source, "MathJax.js")) and not os.path.isfile(os.path.join(dest, "MathJax.js")):
            shutil.copytree(source, dest, symlinks=False, dirs_exist_ok=True)
            for folder, dirs, files in os.walk(dest):
                os.chmod(folder, 0o755)
                for name in files:
                    os.chmod(os.path.join(folder, name), 0o644)
            self.log.info("MathJax for the feedback pages: %s", dest)


class MathJaxFetchFeedback(ExchangeFetchFeedback):
    """nbgrader's fetch_feedback, with the page's equations typeset offline: the course's pages load
    MathJax from ``../../_mathjax/`` (right in ``grading/feedback/<student>/<assignment>/``); a fetched page
    lies in ``<assignment>/feedback/<timestamp>/``, so its copy loads ``../_mathjax/``, a link in the
    student's feedback folder to the exchange's one copy (nbgrader's submit leaves ``feedback/`` out)."""

    def copy_files(self):
        super().copy_files()
        shared = os.path.join(self.outbound_path, MATHJAX_DIR)
        if not os.path.isfile(os.path.join(shared, "MathJax.js")):
            return
        link = os.path.join(self.dest_path, MATHJAX_DIR)
        if not os.path.lexists(link) and os.path.isdir(self.dest_path):
            os.symlink(shared, link)
        graded, fetched = f'src="../../{MATHJAX_DIR}/MathJax.js', f'src="../{MATHJAX_DIR}/MathJax.js'
        for notebook_id, timestamp, _ in self.feedback_files:
            page = os.path.join(self.dest_path, timestamp, notebook_id + ".html")
            if os.path.isfile(page) and not os.path.islink(page):
                with open(page, encoding="utf-8") as f:
                    text = f.read()
                if graded in text:
                    with open(page, "w", encoding="utf-8") as f:
                        f.write(text.replace(graded, fetched, 1))


def prepare_exchange(root: str | Path, course_id: str, owner: str, group: str) -> Path:
    """Create (or repair) ROOT/COURSE_ID with the permissions above; return the course folder.

    ROOT is root's and sticky; the course, outbound and feedback folders are OWNER's; inbound
    is OWNER's and set-gid to GROUP (the instructors), so submissions are readable by them.
    Run as root.
    """
    root = Path(root)
    uid, gid = pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid
    root.mkdir(parents=True, exist_ok=True)
    os.chown(root, 0, 0)
    os.chmod(root, ROOT_MODE)
    course = root / course_id
    for path, mode in [(course, COURSE_MODE), (course / "outbound", OUTBOUND_MODE),
                       (course / "inbound", INBOUND_MODE), (course / "feedback", FEEDBACK_MODE)]:
        path.mkdir(exist_ok=True)
        os.chown(path, uid, gid)
        os.chmod(path, mode)
    return course


def audit_exchange(root: str | Path, course_id: str) -> list[str]:
    """Return what in ROOT/COURSE_ID differs from the layout `prepare_exchange` makes (empty: none)."""
    root = Path(root)
    problems = []
    expected = [(root, ROOT_MODE), (root / course_id, COURSE_MODE), (root / course_id / "outbound", OUTBOUND_MODE),
                (root / course_id / "inbound", INBOUND_MODE), (root / course_id / "feedback", FEEDBACK_MODE)]
    for path, mode in expected:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            problems.append(f"{path} is missing")
            continue
        if not stat.S_ISDIR(st.st_mode):
            problems.append(f"{path} is not a folder")
        elif stat.S_IMODE(st.st_mode) != mode:
            problems.append(f"{path} has mode {stat.S_IMODE(st.st_mode):o}, expected {mode:o}")
    return problems
