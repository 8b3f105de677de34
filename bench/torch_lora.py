"""PyTorch + PEFT side of the LoRA CPU benchmark (crates/hz-train/benches/lora.rs).

Run by the benchmark as `python bench/torch_lora.py JOB.json`; the job names the model folder
the Rust side wrote and the exact token rows, so both sides do the same work. Prints one JSON
line on stdout in the shape lora.rs reads; progress goes to stderr.

Times are CPU seconds of this process, all threads (time.process_time), with wall time beside:
the machine is shared, so wall time is not a fair measure.
"""

import json
import os
import platform
import sys
import time


def timed(f):
    c0, w0 = time.process_time(), time.perf_counter()
    out = f()
    return out, time.process_time() - c0, time.perf_counter() - w0


def main():
    with open(sys.argv[1]) as fh:
        job = json.load(fh)

    import peft
    import safetensors
    import torch
    import transformers
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    threads = int(job["threads"])
    torch.set_num_threads(threads)
    # One inter-op thread: candle runs one op at a time too, and idle pools only add noise.
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    # SDPA is transformers' default attention on CPU (fused, the faster of the two); "eager"
    # can be chosen for comparison.
    attn = os.environ.get("HZ_BENCH_ATTN", "sdpa")

    kwargs = dict(attn_implementation=attn)
    # transformers 5 renamed torch_dtype to dtype.
    major = int(transformers.__version__.split(".")[0])
    kwargs["dtype" if major >= 5 else "torch_dtype"] = torch.float32
    model = AutoModelForCausalLM.from_pretrained(job["model_dir"], **kwargs)
    model.config.use_cache = True
    lcfg = LoraConfig(
        r=job["rank"],
        lora_alpha=job["alpha"],
        target_modules=list(job["targets"]),
        lora_dropout=0.0,
        bias="none",
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lcfg)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Only the LoRA matrices train: the frozen base (embeddings and tied head included) never
    # forms a weight gradient, as on the candle side.
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad)
    assert len(trainable) == 2 * model.base_model.model.config.num_hidden_layers * len(job["targets"])

    eos = model.base_model.model.config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    prompts = torch.tensor(job["prompts"], dtype=torch.long)
    new_tokens = int(job["new_tokens"])

    def generate(n):
        # Greedy with the KV cache, the whole batch at once; no padding (equal-length prompts).
        with torch.inference_mode():
            out = model.generate(
                input_ids=prompts,
                attention_mask=torch.ones_like(prompts),
                max_new_tokens=n,
                do_sample=False,
                use_cache=True,
                eos_token_id=sorted(eos_ids),
                pad_token_id=sorted(eos_ids)[0],
            )
        rows = []
        for r in out[:, prompts.shape[1] :].tolist():
            # Count as candle does: every generated token up to and including an end token.
            kept = []
            for t in r:
                kept.append(t)
                if t in eos_ids:
                    break
            rows.append(kept)
        return rows

    # Generation first, while B = 0 (the adapted model equals the base), as on the candle side.
    model.eval()
    generate(4)
    gen_cpu = gen_wall = 0.0
    gen_tokens = 0
    first_rows = None
    runs_cpu = []
    for _ in range(job["gen_reps"]):
        rows, cpu, wall = timed(lambda: generate(new_tokens))
        gen_tokens += sum(len(r) for r in rows)
        runs_cpu.append(cpu)
        gen_cpu += cpu
        gen_wall += wall
        if first_rows is None:
            first_rows = rows
        print(f"torch: generate {cpu:.2f} CPU-s {wall:.2f} s", file=sys.stderr)

    # Training: rows of SEQ + 1 tokens; the first SEQ are the input, the next SEQ the targets;
    # token-mean NLL over all of them, backward, global-norm clip, AdamW.
    a = job["adamw"]
    opt = torch.optim.AdamW(
        trainable, lr=a["lr"], betas=tuple(a["betas"]), eps=a["eps"], weight_decay=a["weight_decay"]
    )
    rows = torch.tensor(job["train_rows"], dtype=torch.long)
    inputs, targets = rows[:, :-1].contiguous(), rows[:, 1:].contiguous()
    model.train()

    def forward():
        # use_cache=False: training keeps no KV cache (the candle side builds one it never reads).
        logits = model(input_ids=inputs, use_cache=False).logits
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def optimize():
        if a["max_grad_norm"] > 0:
            torch.nn.utils.clip_grad_norm_(trainable, a["max_grad_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)

    def step():
        # Phases timed apart (CPU ops run eagerly, so each ends when its call returns).
        loss, fwd, _ = timed(forward)
        _, bwd, _ = timed(loss.backward)
        _, upd, _ = timed(optimize)
        return loss.item(), (fwd, bwd, upd)

    (first_loss, _), warm_cpu, _ = timed(step)
    print(f"torch: warm-up step {warm_cpu:.2f} CPU-s, loss {first_loss:.5f}", file=sys.stderr)
    train_cpu = train_wall = 0.0
    last_loss = first_loss
    steps_cpu = []
    phases = [0.0, 0.0, 0.0]
    for i in range(job["steps"]):
        (last_loss, ph), cpu, wall = timed(step)
        phases = [x + y for x, y in zip(phases, ph)]
        steps_cpu.append(cpu)
        train_cpu += cpu
        train_wall += wall
        print(
            f"torch: step {i + 1} {cpu:.2f} CPU-s {wall:.2f} s (forward {ph[0]:.2f}, backward {ph[1]:.2f}, "
            f"optimizer {ph[2]:.2f}), loss {last_loss:.5f}",
            file=sys.stderr,
        )

    result = {
        "train": {
            "steps": job["steps"],
            "tokens": job["steps"] * inputs.numel(),
            "cpu_s": train_cpu,
            "wall_s": train_wall,
            "steps_cpu_s": steps_cpu,
            "phases_cpu_s": dict(zip(("forward", "backward", "optimizer"), phases)),
            "first_loss": first_loss,
            "last_loss": last_loss,
        },
        "generate": {
            "runs": job["gen_reps"],
            "tokens": gen_tokens,
            "cpu_s": gen_cpu,
            "wall_s": gen_wall,
            "runs_cpu_s": runs_cpu,
            "first_run_tokens": first_rows,
        },
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "peft": peft.__version__,
            "safetensors": safetensors.__version__,
            "attention": attn,
            "threads": torch.get_num_threads(),
            "mkldnn": torch.backends.mkldnn.is_available(),
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
