"""The probability that the model's next token is "yes" rather than "no" (for AUC from logits).

One forward pass per question, unpadded: the last position's logits over the first token of
"Yes"/"yes" and "No"/"no" (summed in probability), renormalised over these two answers.
"""
from __future__ import annotations

from ..errors import GemError
from ..infer.generate import Prompt, _batch


def answer_token_ids(tokenizer, words: tuple[str, ...]) -> list[int]:
    ids = set()
    for word in words:
        for text in (word, " " + word):
            toks = [t for t in tokenizer.encode(text, add_special_tokens=False) if tokenizer.decode([t]).strip()]
            if toks:  # the first token that is not just a space
                ids.add(toks[0])
    return sorted(ids)


def yes_probability(loaded, prompt: Prompt) -> float:
    import torch

    yes = answer_token_ids(loaded.tokenizer, ("Yes", "yes"))
    no = answer_token_ids(loaded.tokenizer, ("No", "no"))
    if not yes or not no or set(yes) & set(no):
        raise GemError("yes/no probe: the tokenizer does not tell 'yes' from 'no' by their first token")
    batch = _batch(loaded, [prompt])
    with torch.no_grad():
        logits = loaded.model(**batch, use_cache=False).logits[0, -1].float()
    probs = torch.softmax(logits, -1)
    p_yes, p_no = probs[yes].sum().item(), probs[no].sum().item()
    return p_yes / (p_yes + p_no) if p_yes + p_no > 0 else 0.5
