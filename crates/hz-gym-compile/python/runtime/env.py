"""The Gymnasium face of a 440hz gym: `reset` and `step` over the runtime in `runtime.py`.

Observations are text; actions are text too (a tool call as JSON text, or free text),
but `step` also takes a dict (a tool call object) for convenience.
"""

import json
from importlib import resources

import gymnasium
from gymnasium import spaces

from . import runtime

_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F)) + "\t\n\r"


def load_bundle():
    """The gym spec and fixture contents, embedded in this package."""
    return json.loads(resources.files(__package__).joinpath("bundle.json").read_text(encoding="utf-8"))


class UnicodeText(spaces.Text):
    """A `Text` space whose `contains` accepts any characters.

    `charset` (what `sample()` draws from) covers printable ASCII and every character of the
    gym's own texts; an agent or a database can still put other characters into an
    observation, and those are valid observations too.
    """

    def contains(self, x):
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length


class GymEnv(gymnasium.Env):
    metadata = {"render_modes": []}

    def __init__(self, render_mode=None, network_allowed_hosts=()):
        bundle = load_bundle()
        self.gym = runtime.Gym(bundle)
        self.env = runtime.Env(self.gym, network_allowed_hosts)
        self.render_mode = render_mode
        charset = sorted(set(_PRINTABLE) | set(bundle.get("charset", "")))
        self.observation_space = UnicodeText(max_length=self.gym.max_observation, min_length=0, charset=charset)
        self.action_space = UnicodeText(
            max_length=self.gym.spec["limits"]["max_action_bytes"], min_length=0, charset=_PRINTABLE
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**63 - 1))
        options = options or {}
        observation, info = self.env.reset(
            seed, task_id=options.get("task_id"), task_index=options.get("task_index")
        )
        return observation, info

    def step(self, action):
        return self.env.step(action)

    def render(self):
        return None
