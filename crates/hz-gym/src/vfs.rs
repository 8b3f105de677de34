//! The mock CLI: a virtual file tree and a small shell over it. Nothing touches the host;
//! the tree is plain data that rewards can inspect.

use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

/// A virtual file tree: file path → content, plus explicit (possibly empty) directories.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Vfs {
    files: BTreeMap<String, String>,
    dirs: std::collections::BTreeSet<String>,
    cwd: String,
}

/// Output of one command.
#[derive(Debug, Clone, PartialEq)]
pub struct CmdOutput {
    pub stdout: String,
    pub exit_code: i32,
}

fn ok(s: impl Into<String>) -> CmdOutput {
    CmdOutput { stdout: s.into(), exit_code: 0 }
}

fn fail(s: impl Into<String>, code: i32) -> CmdOutput {
    CmdOutput { stdout: s.into(), exit_code: code }
}

/// Most bytes a file may hold; keeps a runaway `echo >>` loop bounded.
const MAX_FILE: usize = 256 * 1024;
const MAX_FILES: usize = 2_000;

impl Vfs {
    /// Build from a `files` fixture (path → content).
    pub fn from_fixture(files: &Map<String, Value>) -> Self {
        let mut vfs = Self::default();
        for (path, content) in files {
            let p = normalize("", path);
            if p.is_empty() {
                continue;
            }
            if path.ends_with('/') {
                vfs.add_dirs(&p, true);
            } else {
                vfs.add_dirs(&p, false);
                vfs.files.insert(p, content.as_str().unwrap_or_default().to_string());
            }
        }
        vfs
    }

    fn add_dirs(&mut self, path: &str, include_self: bool) {
        if path.is_empty() {
            return; // the root always exists
        }
        let parts: Vec<&str> = path.split('/').collect();
        let upto = if include_self { parts.len() } else { parts.len().saturating_sub(1) };
        for i in 1..=upto {
            self.dirs.insert(parts[..i].join("/"));
        }
    }

    fn is_dir(&self, p: &str) -> bool {
        p.is_empty() || self.dirs.contains(p)
    }

    /// The tree as JSON: `{files: {path: content}, dirs: [...], cwd}`.
    pub fn files_json(&self) -> Value {
        Value::Object(self.files.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
    }

    pub fn cwd(&self) -> String {
        if self.cwd.is_empty() {
            "/".into()
        } else {
            format!("/{}", self.cwd)
        }
    }

    pub fn result_json(&self, out: &CmdOutput) -> Value {
        json!({
            "stdout": out.stdout, "exit_code": out.exit_code, "cwd": self.cwd(),
            "files": self.files_json(), "dirs": self.dirs.iter().collect::<Vec<_>>(),
        })
    }

    /// Run one command line.
    pub fn run(&mut self, line: &str) -> CmdOutput {
        let Some(words) = shlex::split(line) else {
            return fail("syntax error: unbalanced quotes", 2);
        };
        // Redirection: `cmd ... > file` or `>> file` (only at the end).
        let (words, redirect) = match words.iter().position(|w| w == ">" || w == ">>") {
            Some(i) if i + 2 == words.len() => (words[..i].to_vec(), Some((words[i] == ">>", words[i + 1].clone()))),
            Some(_) => return fail("syntax error: redirection needs exactly one file at the end", 2),
            None => (words, None),
        };
        if words.iter().any(|w| w == "|" || w == "&&" || w == ";" || w == "||") {
            return fail("this shell runs one command at a time (no pipes or chains)", 2);
        }
        let Some((cmd, args)) = words.split_first() else {
            return ok("");
        };
        let out = self.exec(cmd, args);
        match redirect {
            None => out,
            Some((append, target)) if out.exit_code == 0 => {
                let p = normalize(&self.cwd, &target);
                match self.write(&p, &out.stdout, append) {
                    Ok(()) => ok(""),
                    Err(e) => e,
                }
            }
            Some(_) => out,
        }
    }

    fn write(&mut self, p: &str, content: &str, append: bool) -> Result<(), CmdOutput> {
        if p.is_empty() || self.is_dir(p) {
            return Err(fail(format!("{p}: is a directory"), 1));
        }
        let parent = parent(p);
        if !self.is_dir(&parent) {
            return Err(fail(format!("{parent}: no such directory"), 1));
        }
        if !self.files.contains_key(p) && self.files.len() >= MAX_FILES {
            return Err(fail("no space left on device", 1));
        }
        let entry = self.files.entry(p.to_string()).or_default();
        if !append {
            entry.clear();
        }
        if entry.len() + content.len() > MAX_FILE {
            return Err(fail("file too large", 1));
        }
        entry.push_str(content);
        Ok(())
    }

    fn read(&self, p: &str) -> Result<&str, CmdOutput> {
        match self.files.get(p) {
            Some(c) => Ok(c),
            None if self.is_dir(p) => Err(fail(format!("{}: is a directory", display(p)), 1)),
            None => Err(fail(format!("{}: no such file or directory", display(p)), 1)),
        }
    }

    fn children(&self, dir: &str) -> Vec<(String, bool)> {
        let prefix = if dir.is_empty() { String::new() } else { format!("{dir}/") };
        let mut out = std::collections::BTreeMap::new();
        for f in self.files.keys() {
            if let Some(rest) = f.strip_prefix(&prefix) {
                if !rest.contains('/') {
                    out.insert(rest.to_string(), false);
                }
            }
        }
        for d in &self.dirs {
            if let Some(rest) = d.strip_prefix(&prefix) {
                if !rest.is_empty() && !rest.contains('/') {
                    out.insert(rest.to_string(), true);
                }
            }
        }
        out.into_iter().collect()
    }

    fn exec(&mut self, cmd: &str, args: &[String]) -> CmdOutput {
        let (flags, operands): (Vec<&String>, Vec<&String>) =
            args.iter().partition(|a| a.starts_with('-') && a.len() > 1);
        let has = |f: &str| {
            flags.iter().any(|x| x.as_str() == f || (x.len() > 1 && !x.starts_with("--") && x[1..].contains(&f[1..])))
        };
        let cwd = self.cwd.clone();
        let path = |s: &str| normalize(&cwd, s);
        match cmd {
            "pwd" => ok(format!("{}\n", self.cwd())),
            "echo" => ok(format!("{}\n", args.join(" "))),
            "whoami" => ok("agent\n"),
            "cd" => {
                let target = operands.first().map_or(String::new(), |s| path(s));
                if self.is_dir(&target) {
                    self.cwd = target;
                    ok("")
                } else {
                    fail(format!("cd: {}: no such directory", display(&target)), 1)
                }
            }
            "ls" => {
                let targets: Vec<String> = if operands.is_empty() {
                    vec![self.cwd.clone()]
                } else {
                    operands.iter().map(|s| path(s)).collect()
                };
                let mut out = String::new();
                let mut code = 0;
                for t in &targets {
                    if self.files.contains_key(t) {
                        out.push_str(&format!("{}\n", t.rsplit('/').next().unwrap_or(t)));
                    } else if self.is_dir(t) {
                        if targets.len() > 1 {
                            out.push_str(&format!("{}:\n", display(t)));
                        }
                        for (name, is_dir) in self.children(t) {
                            if name.starts_with('.') && !has("-a") {
                                continue;
                            }
                            out.push_str(&name);
                            if is_dir {
                                out.push('/');
                            }
                            out.push('\n');
                        }
                    } else {
                        out.push_str(&format!("ls: {}: no such file or directory\n", display(t)));
                        code = 1;
                    }
                }
                CmdOutput { stdout: out, exit_code: code }
            }
            "cat" => {
                if operands.is_empty() {
                    return fail("cat: missing file operand", 1);
                }
                let mut out = String::new();
                for o in &operands {
                    match self.read(&path(o)) {
                        Ok(c) => out.push_str(c),
                        Err(e) => return e,
                    }
                }
                ok(out)
            }
            "head" | "tail" | "wc" => {
                let n = flag_value(args, "-n").unwrap_or(10);
                let files: Vec<&String> = operands
                    .iter()
                    .copied()
                    .filter(|o| o.parse::<usize>().is_err() || !args.contains(&"-n".to_string()))
                    .collect();
                let Some(f) = files.last() else {
                    return fail(format!("{cmd}: missing file operand"), 1);
                };
                let content = match self.read(&path(f)) {
                    Ok(c) => c.to_string(),
                    Err(e) => return e,
                };
                let lines: Vec<&str> = content.lines().collect();
                match cmd {
                    "head" => ok(join_lines(&lines[..n.min(lines.len())])),
                    "tail" => ok(join_lines(&lines[lines.len().saturating_sub(n)..])),
                    _ if has("-l") => ok(format!("{} {f}\n", lines.len())),
                    _ if has("-w") => ok(format!("{} {f}\n", content.split_whitespace().count())),
                    _ => ok(format!("{} {} {} {f}\n", lines.len(), content.split_whitespace().count(), content.len())),
                }
            }
            "grep" => {
                let Some((pat, files)) = operands.split_first() else {
                    return fail("grep: missing pattern", 2);
                };
                let re = match regex::RegexBuilder::new(pat).case_insensitive(has("-i")).size_limit(1 << 20).build() {
                    Ok(r) => r,
                    Err(_) => return fail(format!("grep: bad pattern {pat:?}"), 2),
                };
                let targets: Vec<String> = if has("-r") || has("-R") {
                    let roots: Vec<String> =
                        if files.is_empty() { vec![self.cwd.clone()] } else { files.iter().map(|f| path(f)).collect() };
                    self.files
                        .keys()
                        .filter(|k| roots.iter().any(|r| r.is_empty() || *k == r || k.starts_with(&format!("{r}/"))))
                        .cloned()
                        .collect()
                } else {
                    files.iter().map(|f| path(f)).collect()
                };
                if targets.is_empty() {
                    return fail("grep: missing file operand", 2);
                }
                let mut out = String::new();
                let many = targets.len() > 1;
                for t in &targets {
                    let content = match self.read(t) {
                        Ok(c) => c,
                        Err(e) => return e,
                    };
                    let hits: Vec<&str> = content.lines().filter(|l| re.is_match(l)).collect();
                    if has("-l") {
                        if !hits.is_empty() {
                            out.push_str(&format!("{t}\n"));
                        }
                    } else if has("-c") {
                        out.push_str(&if many { format!("{t}:{}\n", hits.len()) } else { format!("{}\n", hits.len()) });
                    } else {
                        for h in hits {
                            out.push_str(&if many { format!("{t}:{h}\n") } else { format!("{h}\n") });
                        }
                    }
                }
                let code = if out.is_empty() { 1 } else { 0 };
                CmdOutput { stdout: out, exit_code: code }
            }
            "find" => {
                let root = operands.first().filter(|o| !o.starts_with('-')).map_or(self.cwd.clone(), |s| path(s));
                let name = args.iter().position(|a| a == "-name").and_then(|i| args.get(i + 1));
                let want_type =
                    args.iter().position(|a| a == "-type").and_then(|i| args.get(i + 1)).map(String::as_str);
                let glob = name.map(|g| glob_regex(g));
                let under = |p: &str| root.is_empty() || p == root || p.starts_with(&format!("{root}/"));
                let mut hits: Vec<String> = Vec::new();
                if want_type != Some("d") {
                    hits.extend(self.files.keys().filter(|k| under(k)).cloned());
                }
                if want_type != Some("f") {
                    hits.extend(self.dirs.iter().filter(|k| under(k)).cloned());
                }
                hits.retain(|h| glob.as_ref().is_none_or(|g| g.is_match(h.rsplit('/').next().unwrap_or(h))));
                hits.sort();
                ok(hits.iter().map(|h| format!("{}\n", display(h))).collect::<String>())
            }
            "mkdir" => {
                for o in &operands {
                    let p = path(o);
                    if self.files.contains_key(&p) || (self.dirs.contains(&p) && !has("-p")) {
                        return fail(format!("mkdir: {}: already exists", display(&p)), 1);
                    }
                    if !has("-p") && !self.is_dir(&parent(&p)) {
                        return fail(format!("mkdir: {}: no such directory", display(&parent(&p))), 1);
                    }
                    self.add_dirs(&p, true);
                }
                ok("")
            }
            "touch" => {
                for o in &operands {
                    let p = path(o);
                    if !self.files.contains_key(&p) {
                        if let Err(e) = self.write(&p, "", true) {
                            return e;
                        }
                    }
                }
                ok("")
            }
            "rm" => {
                if operands.is_empty() {
                    return fail("rm: missing operand", 1);
                }
                for o in &operands {
                    let p = path(o);
                    if self.files.remove(&p).is_some() {
                        continue;
                    }
                    if self.dirs.contains(&p) {
                        if !(has("-r") || has("-R")) {
                            return fail(format!("rm: {}: is a directory", display(&p)), 1);
                        }
                        let prefix = format!("{p}/");
                        self.files.retain(|k, _| !k.starts_with(&prefix));
                        self.dirs.retain(|k| k != &p && !k.starts_with(&prefix));
                        if self.cwd == p || self.cwd.starts_with(&prefix) {
                            self.cwd = parent(&p);
                        }
                    } else if !has("-f") {
                        return fail(format!("rm: {}: no such file or directory", display(&p)), 1);
                    }
                }
                ok("")
            }
            "mv" | "cp" => {
                let [src, dst] = operands.as_slice() else {
                    return fail(format!("{cmd}: needs a source and a destination"), 1);
                };
                let (src, mut dst) = (path(src), path(dst));
                if self.is_dir(&dst) {
                    let name = src.rsplit('/').next().unwrap_or(&src).to_string();
                    dst = if dst.is_empty() { name } else { format!("{dst}/{name}") };
                }
                if let Some(content) = self.files.get(&src).cloned() {
                    if dst == src {
                        return fail(format!("{cmd}: {}: source and destination are the same file", display(&src)), 1);
                    }
                    if let Err(e) = self.write(&dst, &content, false) {
                        return e;
                    }
                    if cmd == "mv" {
                        self.files.remove(&src);
                    }
                    ok("")
                } else if self.dirs.contains(&src) {
                    if cmd == "cp" && !(has("-r") || has("-R")) {
                        return fail(format!("cp: {}: is a directory (use -r)", display(&src)), 1);
                    }
                    if dst == src || dst.starts_with(&format!("{src}/")) {
                        return fail(format!("{cmd}: cannot move a directory into itself"), 1);
                    }
                    let prefix = format!("{src}/");
                    let moved: Vec<(String, String)> = self
                        .files
                        .iter()
                        .filter(|(k, _)| k.starts_with(&prefix))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    let subdirs: Vec<String> = self.dirs.iter().filter(|d| d.starts_with(&prefix)).cloned().collect();
                    self.add_dirs(&dst, true);
                    for d in &subdirs {
                        self.add_dirs(&format!("{dst}/{}", &d[prefix.len()..]), true);
                    }
                    for (k, v) in &moved {
                        self.files.insert(format!("{dst}/{}", &k[prefix.len()..]), v.clone());
                    }
                    if cmd == "mv" {
                        for (k, _) in &moved {
                            self.files.remove(k);
                        }
                        self.dirs.retain(|d| d != &src && !d.starts_with(&prefix));
                    }
                    ok("")
                } else {
                    fail(format!("{cmd}: {}: no such file or directory", display(&src)), 1)
                }
            }
            other => fail(format!("{other}: command not found\n"), 127),
        }
    }
}

fn join_lines(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

fn flag_value(args: &[String], flag: &str) -> Option<usize> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
}

fn glob_regex(glob: &str) -> regex::Regex {
    let mut re = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).unwrap_or_else(|_| regex::Regex::new("^$").expect("static regex"))
}

fn parent(p: &str) -> String {
    p.rsplit_once('/').map_or(String::new(), |(a, _)| a.to_string())
}

fn display(p: &str) -> String {
    if p.is_empty() {
        "/".into()
    } else {
        p.to_string()
    }
}

/// Resolve `p` against `cwd` into a root-relative path without `.`/`..` (never above root).
fn normalize(cwd: &str, p: &str) -> String {
    let mut parts: Vec<&str> = if p.starts_with('/') || p.starts_with('~') {
        vec![]
    } else {
        cwd.split('/').filter(|s| !s.is_empty()).collect()
    };
    for seg in p.trim_start_matches('~').split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vfs() -> Vfs {
        let files = json!({"app.log": "a\nERROR b\nc\n", "src/main.rs": "fn main() {}\n", "tmp/x.tmp": "", "README.md": "hi\n"});
        Vfs::from_fixture(files.as_object().unwrap())
    }

    #[test]
    fn moves_copies_and_deletes() {
        let mut v = vfs();
        assert_eq!(v.run("mkdir logs").exit_code, 0);
        assert_eq!(v.run("mv app.log logs/").exit_code, 0);
        assert!(v.files.contains_key("logs/app.log") && !v.files.contains_key("app.log"));
        assert_eq!(v.run("cp README.md backup.md").exit_code, 0);
        assert_eq!(v.files["backup.md"], "hi\n");
        assert_eq!(v.run("rm tmp").exit_code, 1);
        assert_eq!(v.run("rm -r tmp").exit_code, 0);
        assert!(!v.dirs.contains("tmp"));
        assert_eq!(v.run("mv src lib").exit_code, 0);
        // Moving a file onto itself keeps it.
        assert_eq!(v.run("mv README.md .").exit_code, 1);
        assert_eq!(v.run("mv README.md README.md").exit_code, 1);
        assert_eq!(v.files["README.md"], "hi\n");
        assert_eq!(v.run("mkdir -p /").exit_code, 0);
        assert!(!v.dirs.contains(""));
        assert!(v.files.contains_key("lib/main.rs"));
    }

    #[test]
    fn reads_and_searches() {
        let mut v = vfs();
        assert_eq!(v.run("grep ERROR app.log").stdout, "ERROR b\n");
        assert_eq!(v.run("grep -rl ERROR .").stdout, "app.log\n");
        assert_eq!(v.run("wc -l app.log").stdout, "3 app.log\n");
        assert_eq!(v.run("head -n 1 app.log").stdout, "a\n");
        assert_eq!(v.run("find . -name *.rs").stdout, "src/main.rs\n");
        assert_eq!(v.run("ls").stdout, "README.md\napp.log\nsrc/\ntmp/\n");
        assert_eq!(v.run("cd src").exit_code, 0);
        assert_eq!(v.run("pwd").stdout, "/src\n");
        assert_eq!(v.run("cat ../README.md").stdout, "hi\n");
    }

    #[test]
    fn redirection_and_errors() {
        let mut v = vfs();
        assert_eq!(v.run("echo hello > note.txt").exit_code, 0);
        assert_eq!(v.run("echo again >> note.txt").exit_code, 0);
        assert_eq!(v.files["note.txt"], "hello\nagain\n");
        assert_eq!(v.run("frobnicate").exit_code, 127);
        assert_eq!(v.run("cat nope").exit_code, 1);
        assert_eq!(v.run("ls | wc").exit_code, 2);
        assert_eq!(v.run("echo 'unbalanced").exit_code, 2);
        assert_eq!(v.run("cat ../../../../etc/passwd").exit_code, 1);
    }
}
