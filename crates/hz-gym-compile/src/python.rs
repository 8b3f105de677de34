//! The Python face of a gym: a pip-installable package that registers a Gymnasium
//! environment (`gymnasium.make("440hz/<name>-v<version>")`) and runs the same semantics as
//! the Rust runtime, in readable pure Python (the code the builder's Monaco pane shows).
//!
//! The package holds:
//!
//! - `pyproject.toml`: distribution `hz440-<name>`, version `<gym version>.0.0`, the
//!   dependencies pinned to the versions the equivalence test runs ([`PYTHON_REQUIREMENTS`]);
//! - `src/hz440_<name>/__init__.py`: registers the environment id;
//! - `src/hz440_<name>/env.py`: the `gymnasium.Env` subclass;
//! - the interpreter modules (`runtime.py`, `expr.py`, `actions.py`, `sql.py`, `vfs.py`,
//!   `net.py`, `jsontext.py`), the same for every gym;
//! - `src/hz440_<name>/bundle.json`: the spec with every fixture's content, and the
//!   characters of the gym's texts (the observation space's sampling alphabet).
//!
//! Output is deterministic: the same bundle gives the same bytes.

use hz_gym::GymBundle;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Python packages the generated package needs, pinned to the versions the equivalence
/// test (`tests/python_equivalence.rs`) and `scripts/setup-python-venv.sh` install.
pub const PYTHON_REQUIREMENTS: &[(&str, &str)] = &[
    ("gymnasium", "1.4.0"),
    ("jinja2", "3.1.6"),
    ("jsonschema", "4.26.0"),
    ("cel-python", "0.5.0"),
    ("jsonpath-rfc9535", "1.0.1"),
    ("google-re2", "1.1.20251105"),
];

/// The oldest Python the package runs on (`sqlite3` serialize/deserialize/setlimit).
pub const REQUIRES_PYTHON: &str = ">=3.11";

/// A script that times a compiled package on given episodes (used by `hz bench python`).
pub const BENCH_DRIVER: &str = include_str!("../python/bench_driver.py");

/// The interpreter modules, embedded in every package unchanged.
const RUNTIME_MODULES: &[(&str, &str)] = &[
    ("actions.py", include_str!("../python/runtime/actions.py")),
    ("env.py", include_str!("../python/runtime/env.py")),
    ("expr.py", include_str!("../python/runtime/expr.py")),
    ("jsontext.py", include_str!("../python/runtime/jsontext.py")),
    ("net.py", include_str!("../python/runtime/net.py")),
    ("runtime.py", include_str!("../python/runtime/runtime.py")),
    ("sql.py", include_str!("../python/runtime/sql.py")),
    ("vfs.py", include_str!("../python/runtime/vfs.py")),
];

/// What [`python_package`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageInfo {
    /// The output folder (holds `pyproject.toml`).
    pub root: PathBuf,
    /// Distribution name, `hz440-<gym name>`.
    pub distribution: String,
    /// Distribution version, `<gym version>.0.0`.
    pub version: String,
    /// Import name, `hz440_<gym name with underscores>`.
    pub module: String,
    /// Gymnasium id, `440hz/<gym name>-v<gym version>`.
    pub gym_id: String,
    /// Every file written, relative to `root`, sorted.
    pub files: Vec<PathBuf>,
}

/// Everything that can go wrong writing a package.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("gym name {0:?} cannot name a Python package (lowercase letters, digits and dashes)")]
    BadName(String),
    #[error("cannot serialize the gym: {0}")]
    Serialize(String),
    #[error("cannot write {path}: {reason}")]
    Io { path: String, reason: String },
}

/// Write the Python package for `bundle` into `out` (created when missing; files of the same
/// name are replaced).
pub fn python_package(bundle: &GymBundle, out: &Path) -> Result<PackageInfo, CompileError> {
    let spec = &bundle.spec;
    let name = &spec.name;
    if name.is_empty()
        || name.starts_with('-')
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(CompileError::BadName(name.clone()));
    }
    let module = format!("hz440_{}", name.replace('-', "_"));
    let distribution = format!("hz440-{name}");
    let version = format!("{}.0.0", spec.version);
    let gym_id = format!("440hz/{name}-v{}", spec.version);

    let mut files: Vec<(PathBuf, String)> = Vec::new();
    files.push(("pyproject.toml".into(), pyproject(&distribution, &version, &module, spec.title_or_name())));
    files.push(("README.md".into(), readme(&gym_id, &distribution, spec.title_or_name(), &spec.description)));
    let pkg = PathBuf::from("src").join(&module);
    files.push((pkg.join("__init__.py"), init_py(&gym_id, &module, &version)));
    for (file, text) in RUNTIME_MODULES {
        files.push((pkg.join(file), (*text).to_string()));
    }
    files.push((pkg.join("bundle.json"), bundle_json(bundle)?));
    files.sort_by(|a, b| a.0.cmp(&b.0));

    for (rel, text) in &files {
        let path = out.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        std::fs::write(&path, text).map_err(|e| io_err(&path, e))?;
    }
    Ok(PackageInfo {
        root: out.to_path_buf(),
        distribution,
        version,
        module,
        gym_id,
        files: files.into_iter().map(|(p, _)| p).collect(),
    })
}

fn io_err(path: &Path, e: std::io::Error) -> CompileError {
    CompileError::Io { path: path.display().to_string(), reason: e.to_string() }
}

/// The spec (defaults filled in), the fixture contents and the characters of the gym's texts.
fn bundle_json(bundle: &GymBundle) -> Result<String, CompileError> {
    let spec = serde_json::to_value(&bundle.spec).map_err(|e| CompileError::Serialize(e.to_string()))?;
    let fixtures = serde_json::to_value(&bundle.fixtures).map_err(|e| CompileError::Serialize(e.to_string()))?;
    let mut chars = BTreeSet::new();
    collect_chars(&spec, &mut chars);
    collect_chars(&fixtures, &mut chars);
    let charset: String = chars.into_iter().filter(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r')).collect();
    let doc = json!({"spec": spec, "fixtures": fixtures, "charset": charset});
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| CompileError::Serialize(e.to_string()))?;
    text.push('\n');
    Ok(text)
}

fn collect_chars(v: &Value, out: &mut BTreeSet<char>) {
    match v {
        Value::String(s) => out.extend(s.chars()),
        Value::Array(a) => a.iter().for_each(|x| collect_chars(x, out)),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            out.extend(k.chars());
            collect_chars(x, out);
        }),
        Value::Number(n) => out.extend(n.to_string().chars()),
        Value::Bool(_) | Value::Null => {}
    }
}

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn pyproject(distribution: &str, version: &str, module: &str, title: &str) -> String {
    let deps: Vec<String> =
        PYTHON_REQUIREMENTS.iter().map(|(n, v)| format!("    {},", toml_str(&format!("{n}=={v}")))).collect();
    format!(
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = {}\nversion = {}\ndescription = {}\nreadme = \"README.md\"\n\
         requires-python = {}\ndependencies = [\n{}\n]\n\n\
         [tool.setuptools]\npackage-dir = {{\"\" = \"src\"}}\npackages = [{}]\n\n\
         [tool.setuptools.package-data]\n{} = [\"bundle.json\"]\n",
        toml_str(distribution),
        toml_str(version),
        toml_str(&format!("440hz gym: {title} (Gymnasium environment)")),
        toml_str(REQUIRES_PYTHON),
        deps.join("\n"),
        toml_str(module),
        module,
    )
}

fn readme(gym_id: &str, distribution: &str, title: &str, description: &str) -> String {
    format!(
        "# {title}\n\n{description}\n\nA 440hz gym as a Gymnasium environment.\n\n```sh\npip install ./{distribution}\n```\n\n\
         ```python\nimport gymnasium\nimport {module}  # registers the environment\n\n\
         env = gymnasium.make(\"{gym_id}\")\nobservation, info = env.reset(seed=0)\n\
         observation, reward, terminated, truncated, info = env.step('{{\"name\": \"...\", \"arguments\": {{}}}}')\n```\n",
        module = distribution.replace('-', "_"),
    )
}

fn init_py(gym_id: &str, module: &str, version: &str) -> String {
    format!(
        "\"\"\"440hz gym `{gym_id}` as a Gymnasium environment.\n\n\
         Importing this package registers it: `gymnasium.make(\"{gym_id}\")`.\n\"\"\"\n\n\
         import gymnasium\n\nfrom .env import GymEnv\n\n\
         __version__ = \"{version}\"\nGYM_ID = \"{gym_id}\"\n\n\
         if GYM_ID not in gymnasium.registry:\n    gymnasium.register(id=GYM_ID, entry_point=\"{module}.env:GymEnv\")\n\n\
         __all__ = [\"GymEnv\", \"GYM_ID\"]\n"
    )
}

/// Longest fixture text shown in [`python_preview`]; the package itself holds all of it.
const PREVIEW_FIXTURE_CHARS: usize = 1_500;

/// A read-only preview of what `bundle` compiles to, for the builder's code pane: the
/// package's `__init__.py`, then the gym as the Python literals the package loads from
/// `bundle.json` (`SPEC` with every default filled in, `FIXTURES` with long texts cut).
///
/// Deterministic, and any change to the spec (a node, a wire, a position) changes it.
/// Works for any bundle, also one whose name could not name a package.
pub fn python_preview(bundle: &GymBundle) -> String {
    let spec = &bundle.spec;
    let module = format!("hz440_{}", spec.name.replace('-', "_"));
    let gym_id = format!("440hz/{}-v{}", spec.name, spec.version);
    let version = format!("{}.0.0", spec.version);
    let mut out = String::new();
    out.push_str(&format!(
        "# Read-only preview of the Python package this gym compiles to (`hz gym compile`).\n\
         # The package: pyproject.toml, src/{module}/ with the modules below and bundle.json.\n\n\
         # ---- src/{module}/__init__.py\n"
    ));
    out.push_str(&init_py(&gym_id, &module, &version));
    out.push_str(&format!("\n# ---- src/{module}/bundle.json, as the Python values env.py loads\n\n"));
    let spec_value = serde_json::to_value(spec).unwrap_or(Value::Null);
    out.push_str("SPEC = ");
    py_literal(&spec_value, 0, &mut out);
    out.push_str("\n\nFIXTURES = ");
    let fixtures: serde_json::Map<String, Value> = bundle
        .fixtures
        .iter()
        .map(|(name, content)| {
            let shown = match content {
                Value::String(s) if s.chars().count() > PREVIEW_FIXTURE_CHARS => {
                    let cut: String = s.chars().take(PREVIEW_FIXTURE_CHARS).collect();
                    Value::String(format!("{cut}… ({} more characters)", s.chars().count() - PREVIEW_FIXTURE_CHARS))
                }
                other => other.clone(),
            };
            (name.clone(), shown)
        })
        .collect();
    py_literal(&Value::Object(fixtures), 0, &mut out);
    out.push('\n');
    out
}

/// A Python string literal. JSON's string escapes (`\"`, `\\`, `\n`, `\uXXXX`, ...) are
/// also Python's, so the JSON form is a valid Python literal.
fn py_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string())
}

fn py_indent(level: usize, out: &mut String) {
    for _ in 0..level {
        out.push_str("    ");
    }
}

/// Render a JSON value as a readable Python literal (4-space indent, trailing commas,
/// `True`/`False`/`None`, multi-line texts as implicitly concatenated lines).
fn py_literal(v: &Value, level: usize, out: &mut String) {
    match v {
        Value::Null => out.push_str("None"),
        Value::Bool(true) => out.push_str("True"),
        Value::Bool(false) => out.push_str("False"),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) if s.trim_end_matches('\n').contains('\n') => {
            out.push_str("(\n");
            let lines: Vec<&str> = s.split_inclusive('\n').collect();
            for line in lines {
                py_indent(level + 1, out);
                out.push_str(&py_str(line));
                out.push('\n');
            }
            py_indent(level, out);
            out.push(')');
        }
        Value::String(s) => out.push_str(&py_str(s)),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            let scalars =
                items.iter().all(|x| !x.is_array() && !x.is_object() && !x.as_str().is_some_and(|s| s.contains('\n')));
            if scalars {
                let mut inline = String::new();
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        inline.push_str(", ");
                    }
                    py_literal(x, level, &mut inline);
                }
                if inline.len() <= 80 {
                    out.push('[');
                    out.push_str(&inline);
                    out.push(']');
                    return;
                }
            }
            out.push_str("[\n");
            for x in items {
                py_indent(level + 1, out);
                py_literal(x, level + 1, out);
                out.push_str(",\n");
            }
            py_indent(level, out);
            out.push(']');
        }
        Value::Object(map) if map.is_empty() => out.push_str("{}"),
        Value::Object(map) => {
            out.push_str("{\n");
            for (k, x) in map {
                py_indent(level + 1, out);
                out.push_str(&py_str(k));
                out.push_str(": ");
                py_literal(x, level + 1, out);
                out.push_str(",\n");
            }
            py_indent(level, out);
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(name: &str) -> GymBundle {
        GymBundle::from_value(
            json!({
                "spec_version": 1, "name": name, "version": 3, "max_steps": 2, "title": "T \"quoted\"",
                "tasks": [{"id": "a", "q": "héllo"}],
                "fixtures": {"doc": {"kind": "text", "inline": "naïve ✓"}},
                "nodes": [], "edges": []
            }),
            None,
        )
        .unwrap()
    }

    #[test]
    fn writes_a_package_with_the_registered_id() {
        let dir = tempfile::tempdir().unwrap();
        let info = python_package(&bundle("my-gym"), dir.path()).unwrap();
        assert_eq!(info.gym_id, "440hz/my-gym-v3");
        assert_eq!(info.module, "hz440_my_gym");
        assert_eq!(info.distribution, "hz440-my-gym");
        assert_eq!(info.version, "3.0.0");
        let init = std::fs::read_to_string(dir.path().join("src/hz440_my_gym/__init__.py")).unwrap();
        assert!(init.contains("GYM_ID = \"440hz/my-gym-v3\""), "{init}");
        assert!(init.contains("entry_point=\"hz440_my_gym.env:GymEnv\""), "{init}");
        let pyproject = std::fs::read_to_string(dir.path().join("pyproject.toml")).unwrap();
        assert!(pyproject.contains("name = \"hz440-my-gym\""));
        assert!(pyproject.contains("\"gymnasium==1.4.0\","));
        assert!(pyproject.contains("hz440_my_gym = [\"bundle.json\"]"));
        assert!(pyproject.contains("T \\\"quoted\\\""));
        for m in ["runtime.py", "expr.py", "actions.py", "sql.py", "vfs.py", "net.py", "jsontext.py", "env.py"] {
            assert!(dir.path().join("src/hz440_my_gym").join(m).is_file(), "{m}");
        }
        let b: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("src/hz440_my_gym/bundle.json")).unwrap())
                .unwrap();
        assert_eq!(b["fixtures"]["doc"], "naïve ✓");
        assert_eq!(b["spec"]["limits"]["max_node_evals"], 256, "defaults are filled in");
        let charset = b["charset"].as_str().unwrap();
        assert!(charset.contains('✓') && charset.contains('é'));
        assert_eq!(info.files.len(), 12);
    }

    #[test]
    fn output_is_deterministic() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ia = python_package(&bundle("g"), a.path()).unwrap();
        python_package(&bundle("g"), b.path()).unwrap();
        for f in &ia.files {
            assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap(), "{f:?}");
        }
    }

    #[test]
    fn refuses_names_python_cannot_import() {
        let mut b = bundle("g");
        b.spec.name = "Bad Name".into();
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(python_package(&b, dir.path()), Err(CompileError::BadName(_))));
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
    }

    #[test]
    fn preview_shows_init_and_the_spec_as_python() {
        let mut b = bundle("my-gym");
        b.spec.description = "two\nlines".into();
        let text = python_preview(&b);
        assert!(text.contains("GYM_ID = \"440hz/my-gym-v3\""), "{text}");
        assert!(text.contains("# ---- src/hz440_my_gym/__init__.py"), "{text}");
        assert!(text.contains("SPEC = {\n    \"spec_version\": 1,"), "{text}");
        assert!(text.contains("\"invalid_action_penalty\": -0.1,"), "defaults are filled in: {text}");
        assert!(text.contains("(\n        \"two\\n\"\n        \"lines\"\n    )"), "{text}");
        assert!(text.contains("\"doc\": \"naïve ✓\""), "{text}");
        assert_eq!(python_preview(&b), text, "deterministic");
    }

    #[test]
    fn preview_changes_with_the_graph() {
        let node = |x: f64| {
            GymBundle::from_value(
                json!({
                    "spec_version": 1, "name": "g", "max_steps": 2, "tasks": [{"id": "a"}],
                    "nodes": [{"id": "r", "kind": "reward", "value": 1.0, "position": {"x": x, "y": 0.0}}], "edges": []
                }),
                None,
            )
            .unwrap()
        };
        assert_ne!(python_preview(&node(0.0)), python_preview(&node(10.0)));
        let mut wired = node(0.0);
        wired.spec.edges.push(
            serde_json::from_value(json!({"from": {"node": "r", "port": "out"}, "to": {"node": "r", "port": "in"}}))
                .unwrap(),
        );
        assert_ne!(python_preview(&node(0.0)), python_preview(&wired));
    }

    #[test]
    fn preview_literals_are_python_and_round_trip() {
        let b = GymBundle::from_value(
            json!({
                "spec_version": 1, "name": "g", "max_steps": 2,
                "tasks": [{"id": "a", "flag": true, "none": null, "n": [1, 2.5, -3], "q": "say \"hi\"\\n\ttab\nnext\n"}],
                "fixtures": {"big": {"kind": "text", "inline": "x".repeat(PREVIEW_FIXTURE_CHARS + 7)}},
                "nodes": [], "edges": []
            }),
            None,
        )
        .unwrap();
        let text = python_preview(&b);
        assert!(text.contains("\"flag\": True") && text.contains("\"none\": None"), "{text}");
        assert!(text.contains("… (7 more characters)"), "long fixtures are cut");
        // When a Python is at hand, the literal must evaluate to the spec itself.
        let spec_src = text.split("SPEC = ").nth(1).and_then(|s| s.split("\n\nFIXTURES = ").next()).unwrap();
        let script = "import ast, json, sys\nprint(json.dumps(ast.literal_eval(sys.stdin.read())))";
        let Ok(mut child) = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            return;
        };
        use std::io::Write;
        child.stdin.take().unwrap().write_all(spec_src.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let back: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(back, serde_json::to_value(&b.spec).unwrap());
    }
}
