"""The gym runtime: `reset(seed, options)` and `step(action)` with the semantics of the Rust
runtime (`hz_gym::Env`). Same gym, seed and actions → the same observations, rewards and
info, byte for byte.

A gym is a graph of nodes. `reset` walks the flow wires from `on_reset` to `return_reset`,
`step` from `on_step` to `return_step`. Pure nodes (documentation, persona, get_state,
extract, template) are computed when a wired input reads them.
"""

import hashlib

import jsonpath_rfc9535
import re2

from . import expr as ex
from .actions import ActionError, ActionParser
from .jsontext import as_text, dumps, is_int, is_number, rust_trim
from .sql import Sandbox, build_seed, result_text
from .vfs import CmdOutput, Vfs

PURE_KINDS = {"documentation", "persona", "get_state", "extract", "template"}


class GymError(Exception):
    """The gym cannot go on (same cases as the Rust runtime's `GymError`)."""


def seed_draw(seed, purpose):
    """A number drawn from the episode seed for one purpose: the first 8 bytes (little
    endian) of SHA-256(`"440hz:<purpose>:<seed>"`)."""
    digest = hashlib.sha256(f"440hz:{purpose}:{seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _var_accepts(ty, v):
    return {
        "bool": lambda: isinstance(v, bool),
        "int": lambda: is_int(v),
        "float": lambda: is_number(v),
        "string": lambda: isinstance(v, str),
        "list": lambda: isinstance(v, list),
        "object": lambda: isinstance(v, dict),
    }[ty]()


_TYPE_NAMES = {"bool": "Bool", "int": "Int", "float": "Float", "string": "String", "list": "List", "object": "Object"}


def _reward_item(source, kind, value, message=None, rationale=None, skipped=False):
    """One reward term as it appears in `info["rewards"]` (same keys and order as Rust)."""
    item = {"source": source, "kind": kind, "value": float(value)}
    if message is not None:
        item["message"] = message
    if rationale is not None:
        item["rationale"] = rationale
    if skipped:
        item["skipped"] = True
    return item


class Node:
    """A node ready to run: its spec plus wiring and compiled expressions."""

    def __init__(self, spec):
        self.id = spec["id"]
        self.kind = spec["kind"]
        self.spec = spec
        self.data_in = {}  # input port → (source node index, source port)
        self.flow_out = {}  # flow output port → target node index
        self.exprs = {}  # field → Expr
        self.scripts = []  # compiled mock-CLI patterns
        self.path = None  # compiled JSONPath of an extract node

    def tkey(self, field):
        return f"{self.id}/{field}"


class Gym:
    """A loaded gym: the bundle (spec + fixture contents) compiled once."""

    def __init__(self, bundle):
        self.spec = spec = bundle["spec"]
        self.fixture_contents = bundle["fixtures"]
        self.templates = ex.Templates()
        self.nodes = [Node(n) for n in spec["nodes"]]
        index = {n.id: i for i, n in enumerate(self.nodes)}
        for e in spec.get("edges", []):
            src, dst = index[e["from"]["node"]], index[e["to"]["node"]]
            port = e["from"]["port"]
            if port == "out" or self.nodes[src].kind == "switch":
                self.nodes[src].flow_out[port] = dst
            else:
                self.nodes[dst].data_in[e["to"]["port"]] = (src, port)
        for n in self.nodes:
            self._compile_node(n)
        self.on_reset = next(i for i, n in enumerate(self.nodes) if n.kind == "on_reset")
        self.on_step = next(i for i, n in enumerate(self.nodes) if n.kind == "on_step")
        space = next(n.spec for n in self.nodes if n.kind == "action_space")
        limits = spec["limits"]
        self.actions = ActionParser(space["mode"], space.get("tools", []), limits["max_action_bytes"])
        self.max_observation = limits["max_observation_chars"]
        for n in self.nodes:
            if n.kind == "observation_space" and n.spec.get("max_length") is not None:
                self.max_observation = min(self.max_observation, n.spec["max_length"])
        self.seeds = {}
        self.fixtures_scope = {}
        for name, fx in spec.get("fixtures", {}).items():
            content = self.fixture_contents[name]
            if fx["kind"] == "sql":
                self.seeds[name] = build_seed(content)
            elif fx["kind"] in ("text", "json"):
                self.fixtures_scope[name] = content

    def _compile_node(self, n):
        s, k = n.spec, n.kind

        def template(field, src):
            self.templates.add(n.tkey(field), src)

        def expr(field, src):
            n.exprs[field] = ex.Expr(src)

        if k in ("documentation", "persona"):
            template("text", s["text"])
        elif k == "template":
            template("template", s["template"])
        elif k == "set_state":
            if s.get("expr") is not None and "value" not in n.data_in:
                expr("expr", s["expr"])
        elif k == "sql_query":
            if s.get("query") is not None:
                template("query", s["query"])
            if s.get("params") is not None:
                expr("params", s["params"])
        elif k == "mock_cli":
            if s.get("command") is not None:
                template("command", s["command"])
            for i, script in enumerate(s.get("scripts", [])):
                n.scripts.append(re2.compile(f"^(?:{script['pattern']})$"))
                template(f"scripts[{i}].output", script["output"])
        elif k == "http_request":
            template("url", s["url"])
            if s.get("body") is not None:
                template("body", s["body"])
        elif k == "mcp_call":
            template("endpoint", s["endpoint"])
            template("tool", s["tool"])
            if s.get("arguments") is not None:
                expr("arguments", s["arguments"])
        elif k == "switch":
            for c in s["cases"]:
                expr(f"cases.{c['name']}", c["when"])
        elif k == "extract":
            n.path = jsonpath_rfc9535.compile(s["path"])
        elif k == "constraint":
            expr("condition", s["condition"])
            template("message", s.get("message", ""))
        elif k == "reward":
            if s.get("value") is None and s.get("expr") is not None:
                expr("expr", s["expr"])
            if s.get("when") is not None:
                expr("when", s["when"])
        elif k == "overseer":
            template("rubric", s["rubric"])
            if s.get("when") is not None:
                expr("when", s["when"])
        elif k in ("return_reset", "return_step"):
            template("observation", s.get("observation", ""))
            if k == "return_step" and s.get("terminated") is not None:
                expr("terminated", s["terminated"])


class Walk:
    """Mutable state of one walk."""

    def __init__(self, action):
        self.outputs = {}
        self.rewards = []
        self.violations = []
        self.terminated = False
        self.evals = 0
        self.action = action


class Env:
    """One environment: an episode at a time over a shared `Gym`."""

    def __init__(self, gym, network_allowed_hosts=()):
        self.gym = gym
        self.network_allowed_hosts = list(network_allowed_hosts)
        self.episode = None
        self.dbs = {}

    # ------------------------------------------------------------------------ entry points

    def reset(self, seed, task_id=None, task_index=None):
        spec = self.gym.spec
        tasks = spec["tasks"]
        if task_id is not None:
            task = next((t for t in tasks if t["id"] == task_id), None)
            if task is None:
                raise GymError(f"no task {task_id!r} in this gym")
        elif task_index is not None:
            if not 0 <= task_index < len(tasks):
                raise GymError(f"no task 'index {task_index}' in this gym")
            task = tasks[task_index]
        else:
            task = tasks[seed_draw(seed, "task") % len(tasks)]
        task_json = {"id": task["id"]}
        task_json.update({k: v for k, v in task.items() if k not in ("id", "solution")})
        rng_seed = seed_draw(seed, "sql-random")
        self.dbs = {name: db for name, db in self.dbs.items() if not db.dirty}
        for db in self.dbs.values():
            db.reseed(rng_seed)
        self.episode = {
            "task": task,
            "task_json": task_json,
            "state": {v["name"]: v["initial"] for v in spec.get("variables", [])},
            "step": 0,
            "done": False,
            "rng_seed": rng_seed,
            "trees": {},
        }
        none = {"type": "none", "tool": "", "arguments": {}, "text": ""}
        observation, _ = self._walk(self.gym.on_reset, none)
        return observation, {"task_id": task["id"], "seed": seed, "step": 0}

    def step(self, action):
        spec = self.gym.spec
        ep = self.episode
        if ep is None:
            raise GymError("call reset() before step()")
        if ep["done"]:
            raise GymError("the episode is over (terminated or truncated); call reset()")
        ep["step"] += 1
        step = ep["step"]
        task_id = ep["task"]["id"]
        try:
            parsed = self.gym.actions.parse(action)
        except ActionError as e:
            reason = str(e)
            truncated = step >= spec["max_steps"]
            ep["done"] = truncated
            penalty = float(spec["invalid_action_penalty"])
            item = _reward_item("invalid_action", "invalid_action", penalty, message=reason)
            info = {"step": step, "task_id": task_id, "rewards": [item], "violations": [],
                    "action": None, "invalid_action": reason}
            return self._clip(f"Invalid action: {reason}"), penalty, False, truncated, info
        observation, walk = self._walk(self.gym.on_step, parsed)
        reward = _sum(r["value"] for r in walk.rewards)
        if reward != reward or reward in (float("inf"), float("-inf")):
            raise GymError("node `return_step` failed: total reward is not finite")
        terminated = walk.terminated
        truncated = not terminated and step >= spec["max_steps"]
        ep["done"] = terminated or truncated
        info = {"step": step, "task_id": task_id, "rewards": walk.rewards,
                "violations": walk.violations, "action": parsed}
        return observation, reward, terminated, truncated, info

    def done(self):
        return self.episode is None or self.episode["done"]

    # ------------------------------------------------------------------------ the walk

    def _clip(self, s):
        return s[: self.gym.max_observation]

    def _walk(self, start, action):
        nodes = self.gym.nodes
        w = Walk(action)
        w.outputs[start] = {"action": action}
        limit = self.gym.spec["limits"]["max_node_evals"]
        cur = nodes[start].flow_out.get("out")
        if cur is None:
            raise GymError(f"node `{nodes[start].id}` failed: trigger has no outgoing flow")
        while True:
            w.evals += 1
            if w.evals > limit:
                raise GymError(f"limit reached: more than {limit} node evaluations in one walk")
            node = nodes[cur]
            try:
                port, done = self._run_node(cur, w)
            except (ex.ExprError, NodeFailure) as e:
                raise GymError(f"node `{node.id}` failed: {e}") from None
            if done is not None:
                observation, terminated = done
                w.terminated = w.terminated or terminated
                return self._clip(observation), w
            if port not in node.flow_out:
                raise GymError(f"node `{node.id}` failed: flow output `{port}` goes nowhere")
            cur = node.flow_out[port]

    def _inputs(self, idx, w):
        node = self.gym.nodes[idx]
        return {port: self._output_of(src, src_port, w) for port, (src, src_port) in sorted(node.data_in.items())}

    def _output_of(self, src, port, w):
        outs = w.outputs.get(src)
        if outs is not None and port in outs:
            return outs[port]
        node = self.gym.nodes[src]
        if node.kind not in PURE_KINDS:
            raise NodeFailure(f"reads `{node.id}.{port}` before node `{node.id}` has run in this walk")
        w.evals += 1
        if w.evals > self.gym.spec["limits"]["max_node_evals"]:
            raise NodeFailure("node evaluation limit reached")
        try:
            outs = self._eval_pure(src, w)
        except (ex.ExprError, NodeFailure) as e:
            raise NodeFailure(f"in `{node.id}`: {e}") from None
        w.outputs[src] = outs
        return outs.get(port)

    def _scope(self, inputs, w):
        """The names visible to expressions and templates."""
        ep = self.episode
        return {
            "task": ep["task_json"],
            "state": dict(ep["state"]),
            "action": w.action,
            "step": ep["step"],
            "max_steps": self.gym.spec["max_steps"],
            "input": dict(inputs),
            "fixtures": self.gym.fixtures_scope,
            "rewards": list(w.rewards),
            "reward": _sum(r["value"] for r in w.rewards),
            "violations": list(w.violations),
            "terminated": w.terminated,
        }

    def _render(self, node, field, scope):
        return self.gym.templates.render(node.tkey(field), scope)

    def _eval_pure(self, idx, w):
        node = self.gym.nodes[idx]
        inputs = self._inputs(idx, w)
        k = node.kind
        if k in ("documentation", "persona"):
            return {"text": self._render(node, "text", self._scope(inputs, w))}
        if k == "template":
            return {"text": self._render(node, "template", self._scope(inputs, w))}
        if k == "get_state":
            return {"value": self.episode["state"].get(node.spec["variable"])}
        if k == "extract":
            value = inputs.get("value")
            found = node.path.find(value).values() if node.path is not None else []
            found = None if not found else found[0] if len(found) == 1 else list(found)
            return {"text": as_text(found), "value": found}
        raise NodeFailure("not a pure node")

    def _run_node(self, idx, w):
        """Run a flow node. Returns (next flow port, None) or (None, (observation, terminated))."""
        node = self.gym.nodes[idx]
        s, k = node.spec, node.kind
        inputs = self._inputs(idx, w)
        scope = self._scope(inputs, w)
        exprs = node.exprs
        outs = {}
        result = ("out", None)
        if k == "set_state":
            variable = s["variable"]
            if "value" in inputs:
                value = inputs["value"]
            elif "expr" in exprs:
                value = exprs["expr"].eval(scope)
            else:
                raise NodeFailure("no value to set")
            decl = next((v for v in self.gym.spec.get("variables", []) if v["name"] == variable), None)
            if decl is None:
                raise NodeFailure("undeclared variable")
            if not _var_accepts(decl["type"], value):
                raise NodeFailure(f"cannot set `{variable}` ({_TYPE_NAMES[decl['type']]}) to {_json(value)}")
            self.episode["state"][variable] = value
        elif k == "sql_query":
            sql = as_text(inputs["query"]) if "query" in inputs else self._render(node, "query", scope)
            params = []
            if "params" in exprs:
                params = exprs["params"].eval(scope)
                if not isinstance(params, list):
                    raise NodeFailure(f"`params` must give a list, gave {_json(params)}")
            limits = self.gym.spec["limits"]
            database = s["database"]
            if database not in self.dbs:
                if database not in self.gym.seeds:
                    raise NodeFailure("database fixture missing")
                self.dbs[database] = Sandbox(self.gym.seeds[database], self.episode["rng_seed"])
            res = self.dbs[database].run(
                sql, params, s.get("read_only", True), limits["sql_max_rows"], limits["sql_max_instructions"]
            )
            outs = {"ok": res["ok"], "result": res, "text": result_text(res)}
        elif k == "mock_cli":
            command = as_text(inputs["command"]) if "command" in inputs else self._render(node, "command", scope)
            key = s.get("files") or ""
            trees = self.episode["trees"]
            if key not in trees:
                fixture = self.gym.fixture_contents.get(key)
                trees[key] = Vfs(fixture if isinstance(fixture, dict) else None)
            tree = trees[key]
            line = rust_trim(command)
            out = None
            for i, (script, regex) in enumerate(zip(s.get("scripts", []), node.scripts)):
                m = regex.search(line)
                if m is not None:
                    groups = [m.group(0)] + [g if g is not None else "" for g in m.groups()]
                    stdout = self._render(node, f"scripts[{i}].output", dict(scope, match=groups))
                    out = CmdOutput(stdout, script.get("exit_code", 0))
                    break
            if out is None:
                out = tree.run(line)
            outs = {"result": tree.result_json(out), "stdout": out.stdout, "exit_code": out.exit_code}
        elif k == "http_request":
            url = self._render(node, "url", scope)
            if "body" not in inputs and self.gym.templates.has(node.tkey("body")):
                self._render(node, "body", scope)
            error = self._network_refusal(url)
            resp = {"ok": False, "status": 0, "error": error, "body": None, "text": ""}
            outs = {"ok": False, "text": f"error: {error}", "response": resp}
        elif k == "mcp_call":
            endpoint = self._render(node, "endpoint", scope)
            self._render(node, "tool", scope)
            if "arguments" not in inputs and "arguments" in exprs:
                exprs["arguments"].eval(scope)
            error = self._network_refusal(endpoint)
            res = {"ok": False, "error": error, "content": [], "text": ""}
            outs = {"ok": False, "text": f"error: {error}", "result": res}
        elif k == "switch":
            chosen = "default"
            for c in s["cases"]:
                if exprs[f"cases.{c['name']}"].eval_bool(scope):
                    chosen = c["name"]
                    break
            result = (chosen, None)
        elif k == "constraint":
            holds = exprs["condition"].eval_bool(scope)
            if not holds:
                message = self._render(node, "message", scope) or f"constraint `{node.id}` violated"
                w.rewards.append(_reward_item(node.id, "constraint", -float(s["penalty"]), message=message))
                w.violations.append(message)
                w.terminated = w.terminated or bool(s.get("terminate", False))
            outs = {"violated": not holds}
        elif k == "reward":
            give = exprs["when"].eval_bool(scope) if "when" in exprs else True
            amount = 0.0
            if give:
                if s.get("value") is not None:
                    amount = float(s["value"])
                elif "expr" in exprs:
                    amount = exprs["expr"].eval_number(scope)
                w.rewards.append(_reward_item(node.id, "reward", amount))
            outs = {"reward": amount}
        elif k == "overseer":
            ask = exprs["when"].eval_bool(scope) if "when" in exprs else True
            if ask:
                # Rendered for its errors; a configured overseer would be sent the rubric.
                self._render(node, "rubric", scope)
                w.rewards.append(
                    _reward_item(node.id, "overseer", 0.0, message="no overseer configured", skipped=True)
                )
        elif k == "return_reset":
            observation = self._observation(node, inputs, scope)
            result = (None, (observation, False))
        elif k == "return_step":
            observation = self._observation(node, inputs, scope)
            if "terminated" in inputs:
                if not isinstance(inputs["terminated"], bool):
                    raise NodeFailure("`terminated` input is not a bool")
                terminated = inputs["terminated"]
            elif "terminated" in exprs:
                terminated = exprs["terminated"].eval_bool(scope)
            else:
                terminated = False
            result = (None, (observation, terminated))
        else:
            raise NodeFailure(f"{k} nodes do not run on flow")
        w.outputs[idx] = outs
        return result

    def _observation(self, node, inputs, scope):
        if "observation" in inputs:
            return as_text(inputs["observation"])
        return self._render(node, "observation", scope)

    def _network_refusal(self, url):
        """HTTP and MCP nodes: this face has no network; the same refusal as the Rust runtime
        with network off (the default)."""
        from .net import check_url

        error = check_url(url, self.gym.spec.get("network", {}).get("allowed_hosts", []), self.network_allowed_hosts)
        if error is None:
            error = "network calls are not available in the Python face of this gym"
        return error


class NodeFailure(Exception):
    pass


def _sum(values):
    """Sum of reward items from +0.0, as the Rust runtime's `total`."""
    total = 0.0
    for v in values:
        total += v
    return total


def _json(v):
    return dumps(v)
