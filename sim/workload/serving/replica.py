"""One replica of a service, as a SimPy process: continuous batching (vLLM / TensorRT-LLM
in-flight batching) or static batching.

Each iteration every running request that has its prompt processed decodes one token, and
waiting prompts are prefilled in chunks within a per-iteration token budget, as long as the
KV cache has room. A full cache preempts the newest request: its KV is dropped and its
prompt plus the tokens it has generated are prefilled again when it resumes, or
(``preemption: swap``) its KV is copied to host memory over the GPU's PCIe link and back,
blocking those iterations. With ``preemption: none`` (TensorRT-LLM's GUARANTEED_NO_EVICT)
a request is admitted only when the cache can hold its whole sequence, prompt plus output
tokens, next to the whole sequences of the running requests, so nothing is ever
preempted. A runtime whose scheduler does not overlap the GPU adds its host work per
iteration, ``host_overhead_per_request`` x the requests in it, with the GPU idle. Static
batching (TensorRT-LLM's gptSessionBenchmark) runs a fixed batch to completion instead.
In a disaggregated service, a prefill replica hands each finished prompt to the decode
pool (its KV travels through the network model, see :mod:`.job`).

Main assumption: the scheduler does not know a request's output length.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .iteration import IterationModel

if TYPE_CHECKING:
    from .job import ServiceJob

__all__ = ["Replica"]


class Replica:
    """Replica ``r`` of ``job``. Running requests (KV in the cache) sit in slots
    0..n_run-1 in admission order: request id, prompt tokens processed, output tokens
    generated."""

    def __init__(self, job: ServiceJob, r: int, model: IterationModel):
        self.job = job
        self.r = r
        self.model = model
        n_pre = job.n_pre
        self.prefill_only = r < n_pre
        self.decode_only = bool(n_pre) and r >= n_pre
        self.st_ids = np.zeros(64, np.int64)
        self.st_pre = np.zeros(64, np.int64)
        self.st_made = np.zeros(64, np.int64)
        self.n_run = 0
        self.kv_used = 0  # KV in its running requests (job.kv_held adds KV in flight)
        self.kv_res = 0  # preemption "none": whole sequences reserved by running requests
        self.no_evict = job.spec.preemption == "none"

    # ------------------------------------------------------------ the process
    def run(self):
        job, r, env = self.job, self.r, self.job.env
        q = job.queues[r]
        while True:
            if not self.n_run and not q:
                if job.arrivals_over() and not np.isnan(job.done_at).any():
                    job.counters["kv_tokens_left"] += self.kv_used  # 0 unless it leaks
                    job.all_done()
                    return
                job.wake[r] = env.event()
                yield job.wake[r]
                continue
            if job.spec.static_batch:
                yield from self._static_batch()
                continue
            yield from self._iteration()

    def _static_batch(self):
        """A fixed batch: prefill all, then decode to the longest output."""
        job, r, model, env = self.job, self.r, self.model, self.job.env
        plen, olen = job.plen, job.olen
        batch = job.queues[r][:job.spec.static_batch]
        del job.queues[r][:len(batch)]
        pt = int(plen[batch].sum())
        job.counters["prefill_tokens"] += pt
        attn = float((plen[batch] * plen[batch] / 2).sum())
        t, info = model.time(pt, attn, 0, 0.0)
        yield env.timeout(t)
        job.first_at[batch] = env.now
        ctx = plen[batch].astype(float).copy()
        left = olen[batch] - 1
        job.busy_log.append((r, env.now - t, env.now, info.get("hbm_bytes", 0.0), 0))
        while (left > 0).any():
            live = left > 0
            t, info = model.time(0, 0.0, int(live.sum()), float(ctx[live].sum()))
            yield env.timeout(t)
            job.busy_log.append((r, env.now - t, env.now, info["hbm_bytes"],
                                 int(ctx[live].sum())))
            ctx[live] += 1
            left[live] -= 1
            for j in np.asarray(batch)[live & (left == 0)]:
                job.done_at[j] = env.now
        for j in np.asarray(batch)[olen[batch] == 1]:
            job.done_at[j] = env.now
        job.outstanding[r] -= len(batch)
        job.all_done()

    def _iteration(self):
        """One continuous-batching iteration: decodes first, then prefill chunks in the
        token budget."""
        job, r, env, s = self.job, self.r, self.job.env, self.job.spec
        budget = s.token_budget
        ids, pre = self.st_ids[:self.n_run], self.st_pre[:self.n_run]
        dec_idx = np.flatnonzero(pre >= job.tgt[ids])[:s.max_batch]
        if self.prefill_only:
            dec_idx = dec_idx[:0]
        dec_idx, swap_tokens = self._preempt(dec_idx)
        budget -= len(dec_idx)
        chunk_pos, chunk_len, budget = self._continue_prompts(budget)
        swap_tokens += self._admit(budget, chunk_pos, chunk_len)
        ids, pre, mk = (x[:self.n_run] for x in (self.st_ids, self.st_pre, self.st_made))
        cp = np.asarray(chunk_pos, np.int64)
        cl = np.asarray(chunk_len, np.int64)
        pre_tokens = int(cl.sum())
        pre_attn = float((cl * (pre[cp] + cl / 2)).sum()) if len(cp) else 0.0
        dctx = float((job.plen[ids[dec_idx]] + mk[dec_idx]).sum())
        t, info = self.model.time(pre_tokens, pre_attn, len(dec_idx), dctx)
        t += self.model.swap_time(swap_tokens)  # swaps block the iteration (vLLM)
        job.counters["prefill_tokens"] += pre_tokens
        job.counters["swapped_tokens"] += swap_tokens
        if t <= 0:
            job.wake[r] = env.event()
            yield job.wake[r]
            return
        if s.host_overhead_per_request:  # the runtime's host work, GPU idle
            yield env.timeout(s.host_overhead_per_request * (len(dec_idx) + len(cp)))
        yield env.timeout(t)
        job.busy_log.append((r, env.now - t, env.now, info["hbm_bytes"], self.kv_used))
        self._advance(dec_idx, cp, cl, env.now)
        if self.prefill_only:
            self._hand_off(env.now)
        else:
            self._complete(env.now)

    # ------------------------------------------------------------ scheduling
    def _preempt(self, dec_idx: np.ndarray) -> tuple[np.ndarray, int]:
        """Grow the cache by one token per decode; preempt the newest request while it is
        full. Returns the decodes left and the KV tokens swapped out."""
        job, s = self.job, self.job.spec
        swap_tokens = 0
        cap = self.model.kv_capacity_tokens
        assert not (self.no_evict and self.kv_used + len(dec_idx) > cap)
        while self.kv_used + len(dec_idx) > cap and self.n_run:
            self.n_run -= 1
            n = self.n_run
            victim = int(self.st_ids[n])
            v_pre, v_made = int(self.st_pre[n]), int(self.st_made[n])
            held = int(job.tgt[victim]) + max(v_made - int(job.base[victim]) - 1, 0)
            self.kv_used -= held
            job.preempt[victim] += 1
            if s.preemption == "swap":
                job.sw_tok[victim], job.sw_pre[victim], job.sw_made[victim] = \
                    held, v_pre, v_made
                swap_tokens += held
            else:  # recompute: prefill prompt + generated tokens again
                job.tgt[victim] = job.plen[victim] + v_made
                job.base[victim] = v_made
                job.prefilled[victim] = False
            job.queues[self.r].insert(0, victim)
            dec_idx = dec_idx[dec_idx < n]
        return dec_idx, swap_tokens

    def _continue_prompts(self, budget: int) -> tuple[list, list, int]:
        """Chunks of the prompts already started, within ``budget`` tokens."""
        chunk_pos: list[int] = []  # slot of each prefill chunk
        chunk_len: list[int] = []
        if self.n_run:
            ids, pre = self.st_ids[:self.n_run], self.st_pre[:self.n_run]
            todo = self.job.tgt[ids] - pre
            for j in np.flatnonzero(todo > 0):
                if budget <= 0:
                    break
                c = int(min(todo[j], budget)) if self.job.spec.chunked_prefill else \
                    int(todo[j])
                if c > budget:
                    continue
                chunk_pos.append(int(j))
                chunk_len.append(c)
                budget -= c
        return chunk_pos, chunk_len, budget

    def _fits(self, i: int, need: int) -> bool:
        """Admission: the prompt (or the swapped KV) must fit; with no eviction, the whole
        sequence too (then reserved)."""
        job, cap = self.job, self.model.kv_capacity_tokens
        held = job.kv_held[self.r]
        if self.kv_used + held + need + 1 > cap:
            return False
        if self.no_evict:
            whole = int(job.tgt[i]) if self.prefill_only else int(job.plen[i] + job.olen[i])
            if self.kv_res + held + whole > cap:
                return False
            self.kv_res += whole
            job.res_of[i] = whole
        return True

    def _admit(self, budget: int, chunk_pos: list, chunk_len: list) -> int:
        """Admit waiting requests while the budget, the batch and the cache allow; their
        first chunks join ``chunk_pos``/``chunk_len``. Returns the KV tokens swapped in."""
        job, s, q = self.job, self.job.spec, self.job.queues[self.r]
        swap_tokens = 0
        while q and budget > 0 and self.n_run < s.max_batch:
            i = q[0]
            need = int(job.sw_tok[i]) if job.sw_tok[i] else int(job.tgt[i])
            if not self._fits(i, need):
                break
            if self.n_run == len(self.st_ids):  # grow the slot arrays
                self.st_ids, self.st_pre, self.st_made = (
                    np.concatenate([x, np.zeros_like(x)])
                    for x in (self.st_ids, self.st_pre, self.st_made))
            n = self.n_run
            if job.sw_tok[i]:  # swapped out: copy its KV back and carry on
                q.pop(0)
                self.st_ids[n], self.st_pre[n], self.st_made[n] = i, job.sw_pre[i], \
                    job.sw_made[i]
                self.kv_used += need
                swap_tokens += need
                job.sw_tok[i] = 0
                self.n_run += 1
                continue
            if self.decode_only and job.prefilled[i]:  # arrives with its KV: decode at once
                q.pop(0)
                self.st_ids[n], self.st_pre[n], self.st_made[n] = i, job.plen[i], 1
                self.kv_used += int(job.plen[i])  # each later decode adds its token
                self.n_run += 1
                continue
            c = min(int(job.tgt[i]), budget) if s.chunked_prefill else int(job.tgt[i])
            if c > budget and (chunk_pos or self.n_run):
                break  # waits for an iteration of its own
            # (a prompt longer than the budget -- a recompute after preemption, prompt +
            # generated tokens -- runs alone rather than never)
            q.pop(0)
            self.st_ids[n], self.st_pre[n], self.st_made[n] = i, 0, job.base[i]
            self.kv_used += int(job.tgt[i])  # reserve the prompt's KV
            chunk_pos.append(n)
            chunk_len.append(c)
            self.n_run += 1
            budget -= c
        return swap_tokens

    # ------------------------------------------------------------ after an iteration
    def _advance(self, dec_idx: np.ndarray, cp: np.ndarray, cl: np.ndarray, now: float):
        """Each decode made a token; each prefill chunk advanced its prompt, and a
        prompt's last chunk made its first token."""
        job = self.job
        ids, pre, mk = (x[:self.n_run] for x in (self.st_ids, self.st_pre, self.st_made))
        self.kv_used += len(dec_idx)
        mk[dec_idx] += 1
        if len(cp):
            before = pre[cp].copy()
            pre[cp] += cl
            t_cp = job.tgt[ids[cp]]
            done_now = cp[(before < t_cp) & (pre[cp] >= t_cp)]
            mk[done_now] += 1  # a prefill's last chunk yields the next token
            fresh = ids[done_now]
            fresh = fresh[np.isnan(job.first_at[fresh])]
            job.first_at[fresh] = now

    def _drop(self, fin: np.ndarray) -> None:
        """Remove the slots ``fin``, keeping the others in order."""
        ids, pre, mk = (x[:self.n_run] for x in (self.st_ids, self.st_pre, self.st_made))
        keep = np.ones(self.n_run, bool)
        keep[fin] = False
        k = int(keep.sum())
        self.st_ids[:k], self.st_pre[:k], self.st_made[:k] = ids[keep], pre[keep], mk[keep]
        self.n_run = k

    def _hand_off(self, now: float) -> None:
        """Prefill pool: hand finished prompts to the decode pool."""
        job, r = self.job, self.r
        ids, mk = self.st_ids[:self.n_run], self.st_made[:self.n_run]
        fin = np.flatnonzero(mk >= 1)
        for j in fin.tolist():
            i = int(ids[j])
            self.kv_res -= int(job.res_of[i])
            if mk[j] >= job.olen[i]:  # a one-token answer is done here
                job.done_at[i] = now
                self.kv_used -= int(job.tgt[i])
                job.outstanding[r] -= 1
                continue
            d = job.n_pre + int(np.argmin(job.outstanding[job.n_pre:]))
            job.outstanding[r] -= 1
            job.outstanding[d] += 1
            job.pre_of[i], job.where[i] = r, d
            self.kv_used -= int(job.tgt[i])
            job.kv_held[r] += int(job.plen[i])  # held until the transfer completes
            job.send_kv(i, r, d)
        if len(fin):
            self._drop(fin)

    def _complete(self, now: float) -> None:
        """Requests that made their last token finish and free their KV."""
        job = self.job
        ids, mk = self.st_ids[:self.n_run], self.st_made[:self.n_run]
        fin = np.flatnonzero(mk >= job.olen[ids])
        if len(fin):
            fid = ids[fin]
            job.done_at[fid] = now
            self.kv_used -= int((job.tgt[fid] + np.maximum(mk[fin] - job.base[fid] - 1,
                                                           0)).sum())
            self.kv_res -= int(job.res_of[fid].sum())
            job.outstanding[self.r] -= len(fin)
            self._drop(fin)
            job.all_done()
