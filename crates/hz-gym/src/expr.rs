//! CEL expressions and Jinja templates: compiled once per gym, evaluated per node visit.
//! Neither language can perform I/O or loop without bound, which is why a gym from a
//! stranger can run without a container.

use cel_interpreter::extractors::This;
use cel_interpreter::objects::{Key, Map as CelMap};
use cel_interpreter::{Context, ExecutionError, FunctionContext, Program, Value as Cel};
use regex::Regex;
use serde_json::{Number, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, OnceLock};

/// Root names visible to every expression and template.
pub const ROOT_NAMES: &[&str] = &[
    "task",
    "state",
    "action",
    "step",
    "max_steps",
    "input",
    "fixtures",
    "rewards",
    "reward",
    "violations",
    "terminated",
];

/// Deepest bracket nesting accepted in an expression.
const MAX_NESTING: i32 = 48;

/// Functions added beyond CEL's standard library.
/// Root names and `(root, member)` paths an expression or template reads.
pub type References = (Vec<String>, Vec<(String, String)>);

pub const EXTRA_FUNCTIONS: &[&str] = &["lower", "upper", "trim", "to_number", "approx"];

/// A compiled CEL expression with its source (kept for messages).
pub struct Expr {
    pub source: String,
    program: Program,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

impl Expr {
    /// Parse a CEL expression. The error text names the position.
    pub fn compile(source: &str) -> Result<Self, String> {
        if source.trim().is_empty() {
            return Err("empty expression".to_string());
        }
        // The CEL parser can recurse deeply on pathological input; bound the length.
        if source.len() > 8_192 {
            return Err("expression longer than 8192 bytes".to_string());
        }
        // The CEL parser recurses per nesting level: bound the depth before it can overflow
        // the stack (a crash no error handling can catch).
        let mut depth = 0i32;
        for c in strip_strings(source).chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
            if depth > MAX_NESTING {
                return Err(format!("expression nests deeper than {MAX_NESTING} levels"));
            }
        }
        // The CEL parser panics on some malformed input instead of returning an error.
        let program = std::panic::catch_unwind(|| Program::compile(source))
            .map_err(|_| "CEL syntax error: the expression could not be parsed".to_string())?
            .map_err(|e| format!("CEL syntax error: {e}"))?;
        Ok(Self { source: source.to_string(), program })
    }

    /// Names this expression reads: root variables and dotted member paths (`state.x`).
    pub fn references(&self) -> References {
        let refs = self.program.references();
        let locals = macro_locals(&self.source);
        let roots = refs.variables().into_iter().filter(|v| !locals.contains(*v)).map(str::to_string).collect();
        (roots, member_paths(&self.source))
    }

    /// Evaluate against a scope.
    pub fn eval(&self, scope: &Scope) -> Result<Value, String> {
        let mut ctx = base_context().new_inner_scope();
        for (k, b) in &scope.vars {
            ctx.add_variable_from_value(k.clone(), b.cel());
        }
        let out = self.program.execute(&ctx).map_err(|e| format!("CEL error in `{}`: {e}", self.source))?;
        from_cel(&out)
    }

    /// Evaluate and require a boolean.
    pub fn eval_bool(&self, scope: &Scope) -> Result<bool, String> {
        match self.eval(scope)? {
            Value::Bool(b) => Ok(b),
            other => Err(format!("`{}` must give a bool, gave {}", self.source, type_name(&other))),
        }
    }

    /// Evaluate and require a finite number.
    pub fn eval_number(&self, scope: &Scope) -> Result<f64, String> {
        match self.eval(scope)? {
            Value::Number(n) => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                if f.is_finite() {
                    Ok(f)
                } else {
                    Err(format!("`{}` gave a non-finite number", self.source))
                }
            }
            other => Err(format!("`{}` must give a number, gave {}", self.source, type_name(&other))),
        }
    }
}

/// A JSON value shared between nodes, with its CEL form made on first use. Node outputs
/// and per-episode values (task, fixtures, state) are converted at most once.
#[derive(Debug)]
pub struct Shared {
    json: Value,
    cel: OnceLock<Cel>,
    /// The template engine's form, also made once.
    jinja: OnceLock<minijinja::Value>,
}

impl Shared {
    pub fn new(json: Value) -> Arc<Self> {
        Arc::new(Self { json, cel: OnceLock::new(), jinja: OnceLock::new() })
    }

    pub fn json(&self) -> &Value {
        &self.json
    }

    pub fn cel(&self) -> Cel {
        self.cel.get_or_init(|| to_cel(&self.json)).clone()
    }

    fn jinja(&self) -> minijinja::Value {
        self.jinja.get_or_init(|| minijinja::Value::from_serialize(&self.json)).clone()
    }
}

/// What a name is bound to in a scope.
#[derive(Clone)]
enum Bound {
    One(Arc<Shared>),
    /// A map of shared values (a node's inputs), never deep-copied; its CEL form is made
    /// on first use.
    Map(Vec<(String, Arc<Shared>)>, OnceLock<Cel>),
}

impl Bound {
    fn cel(&self) -> Cel {
        match self {
            Bound::One(s) => s.cel(),
            Bound::Map(entries, cel) => cel
                .get_or_init(|| {
                    let map: HashMap<Key, Cel> =
                        entries.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), v.cel())).collect();
                    Cel::Map(CelMap { map: Arc::new(map) })
                })
                .clone(),
        }
    }

    fn jinja(&self) -> minijinja::Value {
        match self {
            Bound::One(s) => s.jinja(),
            Bound::Map(entries, _) => entries.iter().map(|(k, v)| (k.clone(), v.jinja())).collect(),
        }
    }
}

/// The names visible to one evaluation.
#[derive(Default, Clone)]
pub struct Scope {
    vars: Vec<(String, Bound)>,
}

impl Scope {
    pub fn new() -> Self {
        Self::default()
    }

    fn bind(&mut self, name: &str, b: Bound) {
        match self.vars.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = b,
            None => self.vars.push((name.to_string(), b)),
        }
    }

    /// Bind a name to a JSON value.
    pub fn set(&mut self, name: &str, value: &Value) {
        self.bind(name, Bound::One(Shared::new(value.clone())));
    }

    /// Bind a name to a shared value.
    pub fn set_shared(&mut self, name: &str, value: Arc<Shared>) {
        self.bind(name, Bound::One(value));
    }

    /// Bind a name to a map of shared values.
    pub fn set_map(&mut self, name: &str, entries: Vec<(String, Arc<Shared>)>) {
        self.bind(name, Bound::Map(entries, OnceLock::new()));
    }

    /// The named roots only (what a template reads), as template values.
    fn json_of(&self, roots: &[String]) -> BTreeMap<&str, minijinja::Value> {
        self.vars.iter().filter(|(k, _)| roots.iter().any(|r| r == k)).map(|(k, b)| (k.as_str(), b.jinja())).collect()
    }
}

fn base_context() -> &'static Context<'static> {
    static CTX: OnceLock<Context<'static>> = OnceLock::new();
    CTX.get_or_init(|| {
        let mut ctx = Context::default();
        // CEL's stock `matches` compiles its regex on every call; cache compiled patterns.
        ctx.add_function(
            "matches",
            |ftx: &FunctionContext,
             This(this): This<Arc<String>>,
             pattern: Arc<String>|
             -> Result<bool, ExecutionError> { regex_is_match(&pattern, &this).map_err(|e| ftx.error(e)) },
        );
        ctx.add_function("lower", |s: Arc<String>| s.to_lowercase());
        ctx.add_function("upper", |s: Arc<String>| s.to_uppercase());
        ctx.add_function("trim", |s: Arc<String>| s.trim().to_string());
        ctx.add_function("to_number", |v: Cel| -> f64 {
            match v {
                Cel::Int(i) => i as f64,
                Cel::UInt(u) => u as f64,
                Cel::Float(f) => f,
                Cel::String(s) => parse_number(&s),
                _ => f64::NAN,
            }
        });
        ctx.add_function("approx", |a: Cel, b: Cel, tol: Cel| -> bool {
            match (num(&a), num(&b), num(&tol)) {
                (Some(a), Some(b), Some(t)) => (a - b).abs() <= t.abs(),
                _ => false,
            }
        });
        ctx
    })
}

/// Match with a regex from a small per-thread cache (patterns in a gym are few and fixed).
/// The regex is used in place: a clone would start with a cold search cache.
fn regex_is_match(pattern: &str, text: &str) -> Result<bool, String> {
    thread_local! {
        static CACHE: std::cell::RefCell<HashMap<String, Regex>> = std::cell::RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        if let Some(re) = c.borrow().get(pattern) {
            return Ok(re.is_match(text));
        }
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("'{pattern}' is not a valid regex: {e}"))?;
        let mut cache = c.borrow_mut();
        if cache.len() >= 256 {
            cache.clear();
        }
        let hit = re.is_match(text);
        cache.insert(pattern.to_string(), re);
        Ok(hit)
    })
}

/// Lenient number parsing for answers: `"1,234.5"`, `"$12"`, `"45%"`, `" 3 "`.
pub fn parse_number(s: &str) -> f64 {
    let cleaned: String = s.trim().chars().filter(|c| !matches!(c, ',' | '$' | '%' | ' ')).collect();
    cleaned.parse::<f64>().unwrap_or(f64::NAN)
}

fn num(v: &Cel) -> Option<f64> {
    match v {
        Cel::Int(i) => Some(*i as f64),
        Cel::UInt(u) => Some(*u as f64),
        Cel::Float(f) if f.is_finite() => Some(*f),
        _ => None,
    }
}

/// JSON → CEL. Integers become `int` (so `task.n == 3` holds), others `double`.
pub fn to_cel(v: &Value) -> Cel {
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Cel::Int(i),
            None => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Cel::String(Arc::new(s.clone())),
        Value::Array(a) => Cel::List(Arc::new(a.iter().map(to_cel).collect())),
        Value::Object(o) => {
            let map: HashMap<Key, Cel> = o.iter().map(|(k, v)| (Key::String(Arc::new(k.clone())), to_cel(v))).collect();
            Cel::Map(CelMap { map: Arc::new(map) })
        }
    }
}

/// CEL → JSON, with map keys sorted so output never depends on hash order.
pub fn from_cel(v: &Cel) -> Result<Value, String> {
    Ok(match v {
        Cel::Null => Value::Null,
        Cel::Bool(b) => Value::Bool(*b),
        Cel::Int(i) => Value::Number((*i).into()),
        Cel::UInt(u) => Value::Number((*u).into()),
        Cel::Float(f) => match Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => return Err("expression gave a non-finite number".to_string()),
        },
        Cel::String(s) => Value::String(s.to_string()),
        Cel::Bytes(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        Cel::List(l) => Value::Array(l.iter().map(from_cel).collect::<Result<_, _>>()?),
        Cel::Map(m) => {
            let mut entries: Vec<(String, Value)> = Vec::with_capacity(m.map.len());
            for (k, v) in m.map.iter() {
                let key = match k {
                    Key::String(s) => s.to_string(),
                    Key::Int(i) => i.to_string(),
                    Key::Uint(u) => u.to_string(),
                    Key::Bool(b) => b.to_string(),
                };
                entries.push((key, from_cel(v)?));
            }
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().collect())
        }
        Cel::Function(name, _) => return Err(format!("expression gave a function ({name})")),
    })
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "map",
    }
}

/// Replace string literals with blanks so that regex scans see only code.
fn strip_strings(src: &str) -> String {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r#"(?s)'''.*?'''|""".*?"""|'(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*""#).expect("static regex")
    });
    re.replace_all(src, "''").into_owned()
}

/// Identifiers bound by comprehension macros: `list.exists(x, ...)`.
fn macro_locals(src: &str) -> BTreeSet<String> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"\b(?:exists|all|exists_one|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,").expect("static regex")
    });
    re.captures_iter(&strip_strings(src)).map(|c| c[1].to_string()).collect()
}

/// `root.member` pairs for the roots whose members are checked (state, task, input).
fn member_paths(src: &str) -> Vec<(String, String)> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE.get_or_init(|| {
        Regex::new(r"(?:^|[^A-Za-z0-9_.])(state|task|input)\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)").expect("static regex")
    });
    re.captures_iter(&strip_strings(src)).map(|c| (c[1].to_string(), c[2].to_string())).collect()
}

// ---------------------------------------------------------------- templates

/// A Jinja environment holding every template of one gym, compiled once.
pub struct Templates {
    env: minijinja::Environment<'static>,
    /// Names each template reads, found once when it is added; only the roots are handed
    /// to the renderer.
    refs: HashMap<String, References>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Templates")
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Templates {
    pub fn new() -> Self {
        let mut env = minijinja::Environment::new();
        // Missing names render empty in the agent's view rather than failing a step; the
        // validator reports unknown names before a gym ever runs.
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Lenient);
        env.set_fuel(Some(200_000));
        env.set_recursion_limit(64);
        env.set_keep_trailing_newline(false);
        Self { env, refs: HashMap::new() }
    }

    /// Compile a template under a key (e.g. `node-id/field`).
    pub fn add(&mut self, key: &str, source: &str) -> Result<(), String> {
        self.env
            .add_template_owned(key.to_string(), source.to_string())
            .map_err(|e| format!("Jinja syntax error: {}", describe_jinja(&e)))?;
        let refs = self.scan(key)?;
        self.refs.insert(key.to_string(), refs);
        Ok(())
    }

    /// Names a compiled template reads (`state.x`, `task`, ...).
    pub fn references(&self, key: &str) -> Result<References, String> {
        self.refs.get(key).cloned().ok_or_else(|| format!("no template {key:?}"))
    }

    fn scan(&self, key: &str) -> Result<References, String> {
        let tmpl = self.env.get_template(key).map_err(|e| e.to_string())?;
        let mut roots = BTreeSet::new();
        let mut members = Vec::new();
        for name in tmpl.undeclared_variables(true) {
            let mut parts = name.splitn(3, '.');
            let root = parts.next().unwrap_or_default().to_string();
            if let Some(member) = parts.next() {
                if matches!(root.as_str(), "state" | "task" | "input") {
                    members.push((root.clone(), member.to_string()));
                }
            }
            roots.insert(root);
        }
        Ok((roots.into_iter().collect(), members))
    }

    /// Keys of every compiled template.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.refs.keys().map(String::as_str)
    }

    /// Root names a compiled template reads.
    pub fn roots_of(&self, key: &str) -> &[String] {
        self.refs.get(key).map(|(roots, _)| roots.as_slice()).unwrap_or_default()
    }

    pub fn has(&self, key: &str) -> bool {
        self.env.get_template(key).is_ok()
    }

    pub fn render(&self, key: &str, scope: &Scope) -> Result<String, String> {
        let tmpl = self.env.get_template(key).map_err(|e| e.to_string())?;
        tmpl.render(scope.json_of(self.roots_of(key))).map_err(|e| format!("template error: {}", describe_jinja(&e)))
    }
}

fn describe_jinja(e: &minijinja::Error) -> String {
    match e.line() {
        Some(line) => format!("{} (line {line})", e.detail().unwrap_or(&e.kind().to_string())),
        None => e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope(pairs: &[(&str, Value)]) -> Scope {
        let mut s = Scope::new();
        for (k, v) in pairs {
            s.set(k, v);
        }
        s
    }

    #[test]
    fn json_ints_compare_with_cel_ints() {
        let s = scope(&[("task", json!({"n": 3, "x": 2.5}))]);
        assert_eq!(Expr::compile("task.n == 3").unwrap().eval(&s).unwrap(), json!(true));
        assert_eq!(Expr::compile("task.x * 2.0").unwrap().eval_number(&s).unwrap(), 5.0);
    }

    #[test]
    fn extra_functions() {
        let s = scope(&[("a", json!(" West "))]);
        let e = |src: &str| Expr::compile(src).unwrap().eval(&s).unwrap();
        assert_eq!(e("lower(trim(a)) == 'west'"), json!(true));
        assert_eq!(e("approx(to_number('1,234.5'), 1234.5, 0.01)"), json!(true));
        assert_eq!(e("approx(to_number('abc'), 1.0, 100.0)"), json!(false));
        assert_eq!(e("upper('x')"), json!("X"));
    }

    #[test]
    fn references_skip_macro_locals_and_strings() {
        let e = Expr::compile("state.items.exists(x, x == 'state.fake') && input.value.ok").unwrap();
        let (roots, members) = e.references();
        assert!(roots.contains(&"state".to_string()));
        assert!(!roots.contains(&"x".to_string()));
        assert_eq!(members, vec![("state".into(), "items".into()), ("input".into(), "value".into())]);
    }

    #[test]
    fn maps_come_back_sorted() {
        let s = scope(&[]);
        let v = Expr::compile("{'b': 1, 'a': 2, 'c': 3}").unwrap().eval(&s).unwrap();
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"a":2,"b":1,"c":3}"#);
    }

    #[test]
    fn syntax_errors_are_reported_not_panicked() {
        assert!(Expr::compile("1 +").is_err());
        assert!(Expr::compile("").is_err());
        assert!(Expr::compile(&"(".repeat(10_000)).is_err());
        let deep = format!("{}1{}", "(".repeat(2_000), ")".repeat(2_000));
        assert!(Expr::compile(&deep).unwrap_err().contains("nests deeper"));
        let ok = format!("{}1{}", "[".repeat(20), "]".repeat(20));
        assert!(Expr::compile(&ok).is_ok());
    }

    #[test]
    fn templates_render_and_report_names() {
        let mut t = Templates::new();
        t.add("a", "Q: {{ task.question }} ({{ state.tries }})").unwrap();
        let (roots, members) = t.references("a").unwrap();
        assert_eq!(roots, vec!["state".to_string(), "task".to_string()]);
        assert!(members.contains(&("task".into(), "question".into())));
        let out = t.render("a", &scope(&[("task", json!({"question": "why"})), ("state", json!({"tries": 2}))]));
        assert_eq!(out.unwrap(), "Q: why (2)");
        assert!(t.add("b", "{% if %}").is_err());
    }
}
