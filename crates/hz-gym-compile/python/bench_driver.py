"""Times a compiled 440hz gym package on given episodes (for `hz bench python`).

    python bench_driver.py PACKAGE_SRC_DIR GYM_ID MODULE EPISODES.json

EPISODES.json: {"episodes": [{"seed": int, "actions": [JSON action, ...]}]}
Prints {"resets": int, "steps": int, "seconds": float}: the replay loop only, after one
untimed warm-up episode (imports and first-use caches are not counted).
"""

import importlib
import json
import sys
import time


def main():
    src, gym_id, module, episodes_path = sys.argv[1:5]
    sys.path.insert(0, src)
    import gymnasium

    importlib.import_module(module)  # registers the environment
    env = gymnasium.make(gym_id, disable_env_checker=True).unwrapped
    with open(episodes_path, encoding="utf-8") as f:
        episodes = json.load(f)["episodes"]

    def replay(ep):
        env.reset(seed=ep["seed"])
        n = 0
        for action in ep["actions"]:
            env.step(action)
            n += 1
        return n

    if episodes:
        replay(episodes[0])
    steps = 0
    start = time.perf_counter()
    for ep in episodes:
        steps += replay(ep)
    seconds = time.perf_counter() - start
    print(json.dumps({"resets": len(episodes), "steps": steps, "seconds": seconds}))


if __name__ == "__main__":
    main()
