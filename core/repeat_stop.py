"""Stop a greedy reply that has started to loop.

Chat answers greedily, so that a tuned model's answer is repeatable and says what the training taught.
A model trained too long on few rows then often repeats one phrase until the token limit ("Arr, matey!
Arr, matey! ..."): minutes of waiting on a large model for nothing the person can use. Instead of a
repetition penalty, which changes what the model would say and so hides what the training did, the
reply stops once its tail is one block of tokens said three times in a row, and says so.

A short block must repeat more often before it counts (at least MIN_TOKENS tokens in all), so that
"ha ha ha" or a list's "- " does not stop an answer.
"""

from __future__ import annotations

REPEATS = 3  # the same block this many times in a row at the end of the reply
MIN_TOKENS = 16  # and at least this many tokens in the repeated run
LONGEST_BLOCK = 64  # a block longer than this (a repeated paragraph) is not looked for
NOTE = "[stopped here: the reply kept repeating itself]"


def loops(tokens: list[int]) -> bool:
    """Whether `tokens` end in one block said back to back at least REPEATS times and MIN_TOKENS tokens in all."""
    n = len(tokens)
    for size in range(1, min(LONGEST_BLOCK, n // REPEATS) + 1):
        times = max(REPEATS, -(-MIN_TOKENS // size))  # a short block must come round more often
        if times * size > n:
            continue
        block = tokens[n - size:]
        if all(tokens[n - k * size:n - (k - 1) * size] == block for k in range(2, times + 1)):
            return True
    return False


def criterion(prompt_length: int):
    """A transformers StoppingCriteria that ends generation when the reply (the tokens after the prompt) loops."""
    import torch
    from transformers import StoppingCriteria

    class LoopStop(StoppingCriteria):
        def __init__(self):
            self.fired = False

        def __call__(self, input_ids, scores, **kwargs):
            tail = input_ids[:, prompt_length:][:, -LONGEST_BLOCK * REPEATS:].tolist()
            stop = [loops(row) for row in tail]
            self.fired = self.fired or any(stop)
            return torch.tensor(stop, dtype=torch.bool, device=input_ids.device)

    return LoopStop()
