"""The mock CLI: a virtual file tree and a small shell over it. Nothing touches the host;
the tree is plain data that rewards can inspect. Outputs are byte-identical to the Rust
runtime's (same commands, same flags, same messages)."""

import re2

from .jsontext import rust_lines, rust_split_whitespace

MAX_FILE = 256 * 1024
MAX_FILES = 2_000


class CmdOutput:
    def __init__(self, stdout, exit_code=0):
        self.stdout = stdout
        self.exit_code = exit_code


def ok(s):
    return CmdOutput(s, 0)


def fail(s, code):
    return CmdOutput(s, code)


def _utf8_len(s):
    return len(s.encode("utf-8"))


def shlex_split(line):
    """Port of the `shlex` crate (1.x): POSIX-ish words; None on unbalanced quotes."""
    chars = iter(line)
    words = []

    def next_char():
        return next(chars, None)

    ch = next_char()
    while ch is not None:
        # Skip whitespace and comments before a word.
        while True:
            if ch in (" ", "\t", "\n"):
                pass
            elif ch == "#":
                while True:
                    c2 = next_char()
                    if c2 is None or c2 == "\n":
                        break
            else:
                break
            ch = next_char()
            if ch is None:
                return words
        word = []
        while True:
            if ch == '"':
                while True:
                    c2 = next_char()
                    if c2 is None:
                        return None
                    if c2 == "\\":
                        c3 = next_char()
                        if c3 is None:
                            return None
                        if c3 in ("$", "`", '"', "\\"):
                            word.append(c3)
                        elif c3 == "\n":
                            pass
                        else:
                            word.append("\\")
                            word.append(c3)
                    elif c2 == '"':
                        break
                    else:
                        word.append(c2)
            elif ch == "'":
                while True:
                    c2 = next_char()
                    if c2 is None:
                        return None
                    if c2 == "'":
                        break
                    word.append(c2)
            elif ch == "\\":
                c2 = next_char()
                if c2 is None:
                    return None
                if c2 != "\n":
                    word.append(c2)
            elif ch in (" ", "\t", "\n"):
                break
            else:
                word.append(ch)
            ch = next_char()
            if ch is None:
                break
        words.append("".join(word))
        if ch is None:
            break
        ch = next_char()
    return words


def parent(p):
    i = p.rfind("/")
    return "" if i < 0 else p[:i]


def display(p):
    return "/" if p == "" else p


def basename(p):
    return p.rsplit("/", 1)[-1]


def normalize(cwd, p):
    """Resolve `p` against `cwd` into a root-relative path without `.`/`..` (never above root)."""
    if p.startswith("/") or p.startswith("~"):
        parts = []
    else:
        parts = [s for s in cwd.split("/") if s]
    for seg in p.lstrip("~").split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if parts:
                parts.pop()
        else:
            parts.append(seg)
    return "/".join(parts)


def _glob_regex(glob):
    out = ["^"]
    for c in glob:
        if c == "*":
            out.append(".*")
        elif c == "?":
            out.append(".")
        else:
            out.append(re2.escape(c))
    out.append("$")
    try:
        return re2.compile("".join(out))
    except re2.error:
        return re2.compile("^$")


def _parse_usize(s):
    """Rust's `str::parse::<usize>`: ASCII digits with an optional leading `+`."""
    digits = s[1:] if s.startswith("+") else s
    if not digits or not (digits.isascii() and digits.isdigit()):
        return None
    n = int(digits)
    return n if n < 2**64 else None


def _flag_value(args, flag):
    if flag in args:
        i = args.index(flag)
        if i + 1 < len(args):
            return _parse_usize(args[i + 1])
    return None


def _join_lines(lines):
    return "".join(line + "\n" for line in lines)


class Vfs:
    """A virtual file tree: file path → content, plus explicit (possibly empty) directories."""

    def __init__(self, fixture=None):
        self.files = {}
        self.dirs = set()
        self.cwd = ""
        for path, content in (fixture or {}).items():
            p = normalize("", path)
            if not p:
                continue
            if path.endswith("/"):
                self._add_dirs(p, True)
            else:
                self._add_dirs(p, False)
                self.files[p] = content if isinstance(content, str) else ""

    def _add_dirs(self, path, include_self):
        if path == "":
            return  # the root always exists
        parts = path.split("/")
        upto = len(parts) if include_self else max(len(parts) - 1, 0)
        for i in range(1, upto + 1):
            self.dirs.add("/".join(parts[:i]))

    def is_dir(self, p):
        return p == "" or p in self.dirs

    def cwd_text(self):
        return "/" if not self.cwd else "/" + self.cwd

    def files_json(self):
        return {k: self.files[k] for k in sorted(self.files)}

    def result_json(self, out):
        return {
            "stdout": out.stdout, "exit_code": out.exit_code, "cwd": self.cwd_text(),
            "files": self.files_json(), "dirs": sorted(self.dirs),
        }

    def run(self, line):
        """Run one command line."""
        words = shlex_split(line)
        if words is None:
            return fail("syntax error: unbalanced quotes", 2)
        redirect = None
        pos = next((i for i, w in enumerate(words) if w in (">", ">>")), None)
        if pos is not None:
            if pos + 2 != len(words):
                return fail("syntax error: redirection needs exactly one file at the end", 2)
            redirect = (words[pos] == ">>", words[pos + 1])
            words = words[:pos]
        if any(w in ("|", "&&", ";", "||") for w in words):
            return fail("this shell runs one command at a time (no pipes or chains)", 2)
        if not words:
            return ok("")
        out = self._exec(words[0], words[1:])
        if redirect is None or out.exit_code != 0:
            return out
        append, target = redirect
        err = self._write(normalize(self.cwd, target), out.stdout, append)
        return err if err is not None else ok("")

    def _write(self, p, content, append):
        if p == "" or self.is_dir(p):
            return fail(f"{p}: is a directory", 1)
        par = parent(p)
        if not self.is_dir(par):
            return fail(f"{par}: no such directory", 1)
        if p not in self.files and len(self.files) >= MAX_FILES:
            return fail("no space left on device", 1)
        entry = self.files.setdefault(p, "")
        if not append:
            entry = ""
            self.files[p] = entry
        if _utf8_len(entry) + _utf8_len(content) > MAX_FILE:
            return fail("file too large", 1)
        self.files[p] = entry + content
        return None

    def _read(self, p):
        if p in self.files:
            return self.files[p], None
        if self.is_dir(p):
            return None, fail(f"{display(p)}: is a directory", 1)
        return None, fail(f"{display(p)}: no such file or directory", 1)

    def _children(self, d):
        prefix = "" if d == "" else d + "/"
        out = {}
        for f in self.files:
            if f.startswith(prefix):
                rest = f[len(prefix):]
                if "/" not in rest:
                    out[rest] = False
        for x in self.dirs:
            if x.startswith(prefix):
                rest = x[len(prefix):]
                if rest and "/" not in rest:
                    out[rest] = True
        return sorted(out.items())

    def _exec(self, cmd, args):
        flags = [a for a in args if a.startswith("-") and len(a) > 1]
        operands = [a for a in args if not (a.startswith("-") and len(a) > 1)]

        def has(f):
            return any(x == f or (len(x) > 1 and not x.startswith("--") and f[1:] in x[1:]) for x in flags)

        cwd = self.cwd

        def path(s):
            return normalize(cwd, s)

        if cmd == "pwd":
            return ok(self.cwd_text() + "\n")
        if cmd == "echo":
            return ok(" ".join(args) + "\n")
        if cmd == "whoami":
            return ok("agent\n")
        if cmd == "cd":
            target = path(operands[0]) if operands else ""
            if self.is_dir(target):
                self.cwd = target
                return ok("")
            return fail(f"cd: {display(target)}: no such directory", 1)
        if cmd == "ls":
            targets = [path(s) for s in operands] if operands else [self.cwd]
            out, code = [], 0
            for t in targets:
                if t in self.files:
                    out.append(basename(t) + "\n")
                elif self.is_dir(t):
                    if len(targets) > 1:
                        out.append(f"{display(t)}:\n")
                    for name, is_dir in self._children(t):
                        if name.startswith(".") and not has("-a"):
                            continue
                        out.append(name + ("/" if is_dir else "") + "\n")
                else:
                    out.append(f"ls: {display(t)}: no such file or directory\n")
                    code = 1
            return CmdOutput("".join(out), code)
        if cmd == "cat":
            if not operands:
                return fail("cat: missing file operand", 1)
            out = []
            for o in operands:
                content, err = self._read(path(o))
                if err is not None:
                    return err
                out.append(content)
            return ok("".join(out))
        if cmd in ("head", "tail", "wc"):
            n = _flag_value(args, "-n")
            n = 10 if n is None else n
            files = [o for o in operands if _parse_usize(o) is None or "-n" not in args]
            if not files:
                return fail(f"{cmd}: missing file operand", 1)
            f = files[-1]
            content, err = self._read(path(f))
            if err is not None:
                return err
            lines = rust_lines(content)
            if cmd == "head":
                return ok(_join_lines(lines[: min(n, len(lines))]))
            if cmd == "tail":
                return ok(_join_lines(lines[max(len(lines) - n, 0):]))
            if has("-l"):
                return ok(f"{len(lines)} {f}\n")
            if has("-w"):
                return ok(f"{len(rust_split_whitespace(content))} {f}\n")
            return ok(f"{len(lines)} {len(rust_split_whitespace(content))} {_utf8_len(content)} {f}\n")
        if cmd == "grep":
            if not operands:
                return fail("grep: missing pattern", 2)
            pat, files = operands[0], operands[1:]
            try:
                options = re2.Options()
                options.case_sensitive = not has("-i")
                options.max_mem = 1 << 23
                options.log_errors = False
                regex = re2.compile(pat, options)
            except re2.error:
                return fail(f"grep: bad pattern {_debug_str(pat)}", 2)
            if has("-r") or has("-R"):
                roots = [path(f) for f in files] if files else [self.cwd]
                targets = [
                    k for k in sorted(self.files)
                    if any(r == "" or k == r or k.startswith(r + "/") for r in roots)
                ]
            else:
                targets = [path(f) for f in files]
            if not targets:
                return fail("grep: missing file operand", 2)
            out = []
            many = len(targets) > 1
            for t in targets:
                content, err = self._read(t)
                if err is not None:
                    return err
                hits = [line for line in rust_lines(content) if regex.search(line)]
                if has("-l"):
                    if hits:
                        out.append(t + "\n")
                elif has("-c"):
                    out.append(f"{t}:{len(hits)}\n" if many else f"{len(hits)}\n")
                else:
                    for h in hits:
                        out.append(f"{t}:{h}\n" if many else f"{h}\n")
            text = "".join(out)
            return CmdOutput(text, 1 if not text else 0)
        if cmd == "find":
            root = path(operands[0]) if operands and not operands[0].startswith("-") else self.cwd
            name = args[args.index("-name") + 1] if "-name" in args and args.index("-name") + 1 < len(args) else None
            want_type = (
                args[args.index("-type") + 1] if "-type" in args and args.index("-type") + 1 < len(args) else None
            )
            glob = _glob_regex(name) if name is not None else None

            def under(p):
                return root == "" or p == root or p.startswith(root + "/")

            hits = []
            if want_type != "d":
                hits.extend(k for k in sorted(self.files) if under(k))
            if want_type != "f":
                hits.extend(k for k in sorted(self.dirs) if under(k))
            hits = [h for h in hits if glob is None or glob.search(basename(h))]
            hits.sort()
            return ok("".join(display(h) + "\n" for h in hits))
        if cmd == "mkdir":
            for o in operands:
                p = path(o)
                if p in self.files or (p in self.dirs and not has("-p")):
                    return fail(f"mkdir: {display(p)}: already exists", 1)
                if not has("-p") and not self.is_dir(parent(p)):
                    return fail(f"mkdir: {display(parent(p))}: no such directory", 1)
                self._add_dirs(p, True)
            return ok("")
        if cmd == "touch":
            for o in operands:
                p = path(o)
                if p not in self.files:
                    err = self._write(p, "", True)
                    if err is not None:
                        return err
            return ok("")
        if cmd == "rm":
            if not operands:
                return fail("rm: missing operand", 1)
            for o in operands:
                p = path(o)
                if p in self.files:
                    del self.files[p]
                    continue
                if p in self.dirs:
                    if not (has("-r") or has("-R")):
                        return fail(f"rm: {display(p)}: is a directory", 1)
                    prefix = p + "/"
                    self.files = {k: v for k, v in self.files.items() if not k.startswith(prefix)}
                    self.dirs = {d for d in self.dirs if d != p and not d.startswith(prefix)}
                    if self.cwd == p or self.cwd.startswith(prefix):
                        self.cwd = parent(p)
                elif not has("-f"):
                    return fail(f"rm: {display(p)}: no such file or directory", 1)
            return ok("")
        if cmd in ("mv", "cp"):
            if len(operands) != 2:
                return fail(f"{cmd}: needs a source and a destination", 1)
            src, dst = path(operands[0]), path(operands[1])
            if self.is_dir(dst):
                name = basename(src)
                dst = name if dst == "" else f"{dst}/{name}"
            if src in self.files:
                if dst == src:
                    return fail(f"{cmd}: {display(src)}: source and destination are the same file", 1)
                err = self._write(dst, self.files[src], False)
                if err is not None:
                    return err
                if cmd == "mv":
                    self.files.pop(src, None)
                return ok("")
            if src in self.dirs:
                if cmd == "cp" and not (has("-r") or has("-R")):
                    return fail(f"cp: {display(src)}: is a directory (use -r)", 1)
                if dst == src or dst.startswith(src + "/"):
                    return fail(f"{cmd}: cannot move a directory into itself", 1)
                prefix = src + "/"
                moved = [(k, v) for k, v in sorted(self.files.items()) if k.startswith(prefix)]
                subdirs = [d for d in sorted(self.dirs) if d.startswith(prefix)]
                self._add_dirs(dst, True)
                for d in subdirs:
                    self._add_dirs(f"{dst}/{d[len(prefix):]}", True)
                for k, v in moved:
                    self.files[f"{dst}/{k[len(prefix):]}"] = v
                if cmd == "mv":
                    for k, _ in moved:
                        self.files.pop(k, None)
                    self.dirs = {d for d in self.dirs if d != src and not d.startswith(prefix)}
                return ok("")
            return fail(f"{cmd}: {display(src)}: no such file or directory", 1)
        return fail(f"{cmd}: command not found\n", 127)


def _debug_str(s):
    from .jsontext import rust_debug as _rust_debug

    return _rust_debug(s)
