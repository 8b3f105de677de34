"""Parsing agent actions against the action space, with the Rust runtime's messages.

An action is any JSON value: a string (free text, or a tool call as JSON text) or an
object. Whatever the agent sends becomes a parsed action or a clear reason why not.
"""

import jsonschema

from .jsontext import dumps, loads, rust_debug as _rust_debug, rust_trim


class ActionError(Exception):
    """The action is malformed; the message is shown to the agent."""


def _pointer(path):
    """A JSON Pointer (RFC 6901) for a jsonschema path."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class ActionParser:
    def __init__(self, mode, tools, max_bytes):
        self.mode = mode
        self.max_bytes = max_bytes
        self.tools = []
        for t in tools:
            schema = t.get("parameters", {"type": "object", "properties": {}})
            cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            self.tools.append((t["name"], cls(schema)))

    def parse(self, action):
        if isinstance(action, str):
            size = len(action.encode("utf-8"))
        else:
            size = len(dumps(action).encode("utf-8"))
        if size > self.max_bytes:
            raise ActionError(f"action is {size} bytes; the limit is {self.max_bytes}")
        if self.mode in ("text", "code"):
            if isinstance(action, str):
                text = action
            elif isinstance(action, dict):
                text = action.get("text")
                if not isinstance(text, str):
                    text = action.get("code") if "text" not in action else None
                if not isinstance(text, str):
                    raise ActionError('expected text (a JSON string, or {"text": ...})')
            else:
                raise ActionError("expected text (a JSON string)")
            if not rust_trim(text):
                raise ActionError(f"empty {self.mode} action")
            return {"type": self.mode, "tool": "", "arguments": {}, "text": text}
        name, args = tool_call_parts(action)
        validator = next((v for n, v in self.tools if n == name), None)
        if validator is None:
            known = ", ".join(n for n, _ in self.tools)
            raise ActionError(f"unknown tool {_rust_debug(name)}; available tools: {known}")
        # The first failure in (instance path, keyword) order, as the Rust runtime reports it.
        failures = [(_pointer(e.absolute_path), str(e.validator)) for e in validator.iter_errors(args)]
        if failures:
            path, keyword = min(failures)
            raise ActionError(f"invalid arguments for {name}: {path or '/'} fails `{keyword}`")
        text = dumps({"name": name, "arguments": args})
        return {"type": "tool_call", "tool": name, "arguments": args, "text": text}


def tool_call_parts(action):
    """Accepts {"name", "arguments"}, {"tool", "arguments"}, OpenAI's
    {"type": "function", "function": {...}}, {"tool_calls": [one]}, or any of these as a
    JSON string. Arguments may be an object or a JSON string holding one."""
    if isinstance(action, str):
        try:
            action = loads(rust_trim(action))
        except ValueError:
            raise ActionError("action is not a JSON tool call") from None
    if not isinstance(action, dict):
        raise ActionError('a tool call must be a JSON object like {"name": ..., "arguments": {...}}')
    if "tool_calls" in action:
        calls = action["tool_calls"]
        if not isinstance(calls, list):
            raise ActionError("`tool_calls` must be a list")
        if len(calls) == 1:
            return tool_call_parts(calls[0])
        if not calls:
            raise ActionError("`tool_calls` is empty")
        raise ActionError(f"one tool call per step, got {len(calls)}")
    inner = action
    if "function" in action:
        if not isinstance(action["function"], dict):
            raise ActionError("`function` must be an object")
        inner = action["function"]
    name = inner.get("name") if "name" in inner else inner.get("tool")
    if not isinstance(name, str):
        raise ActionError("tool call has no `name`")
    args = inner.get("arguments")
    if args is None:
        args = {}
    elif isinstance(args, str):
        try:
            args = loads(args)
        except ValueError:
            raise ActionError(f"`arguments` of {name} is not valid JSON") from None
    if not isinstance(args, dict):
        raise ActionError(f"`arguments` of {name} must be a JSON object")
    return name, args
