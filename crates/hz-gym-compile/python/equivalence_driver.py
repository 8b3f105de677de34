"""Replays episodes on a compiled 440hz gym package and prints its trajectory as JSON.

Used by `tests/python_equivalence.rs`:

    python equivalence_driver.py PACKAGE_SRC_DIR GYM_ID MODULE EPISODES.json OUT.json

EPISODES.json: {"episodes": [{"seed": int, "task_index": int | null, "actions": [JSON action, ...]}]}
OUT.json: {"check_env": "ok" | error text, "check_env_warnings": [...], "episodes": [{"reset":
{"observation", "info"} | {"error"}, "steps": [{"observation", "reward", "terminated",
"truncated", "info"} | {"error"}]}]}
"""

import importlib
import json
import sys
import traceback
import warnings


def main():
    src, gym_id, module, episodes_path, out_path = sys.argv[1:6]
    sys.path.insert(0, src)
    import gymnasium
    from gymnasium.utils.env_checker import check_env

    importlib.import_module(module)  # registers the environment
    result = {"episodes": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            env = gymnasium.make(gym_id)
            check_env(env.unwrapped)
            result["check_env"] = "ok"
        except Exception:
            result["check_env"] = traceback.format_exc()
    result["check_env_warnings"] = [str(w.message) for w in caught]

    with open(episodes_path, encoding="utf-8") as f:
        episodes = json.load(f)["episodes"]
    env = gymnasium.make(gym_id, disable_env_checker=True).unwrapped
    for ep in episodes:
        record = {"steps": []}
        try:
            options = {"task_index": ep["task_index"]} if ep.get("task_index") is not None else None
            obs, info = env.reset(seed=ep["seed"], options=options)
            record["reset"] = {"observation": obs, "info": info}
        except Exception as e:
            record["reset"] = {"error": f"{type(e).__name__}: {e}"}
            result["episodes"].append(record)
            continue
        for action in ep["actions"]:
            try:
                obs, reward, terminated, truncated, info = env.step(action)
                record["steps"].append(
                    {"observation": obs, "reward": reward, "terminated": terminated,
                     "truncated": truncated, "info": info}
                )
            except Exception as e:
                record["steps"].append({"error": f"{type(e).__name__}: {e}"})
                break
        result["episodes"].append(record)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
