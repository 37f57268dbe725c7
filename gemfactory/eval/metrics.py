"""Metric helpers shared by the eval tasks (scikit-learn for the classification ones)."""
from __future__ import annotations


def binarize(label_lists: list[list[str]], labels: list[str]):
    import numpy as np

    index = {lab: i for i, lab in enumerate(labels)}
    y = np.zeros((len(label_lists), len(labels)), dtype=int)
    for row, labs in enumerate(label_lists):
        for lab in labs:
            y[row, index[lab]] = 1
    return y


def macro_auc(y_true, y_score) -> float | None:
    """Mean ROC-AUC over the labels that have both classes (None when no label has)."""
    from sklearn.metrics import roc_auc_score

    aucs = [roc_auc_score(y_true[:, j], y_score[:, j]) for j in range(y_true.shape[1])
            if 0 < y_true[:, j].sum() < len(y_true)]
    return float(sum(aucs) / len(aucs)) if aucs else None


def multilabel(gold: list[list[str]], pred: list[list[str]], labels: list[str],
               yes_probs: list[dict] | None = None) -> dict:
    import numpy as np
    from sklearn.metrics import f1_score, hamming_loss

    if not gold:
        return {"macro_f1": 0.0, "hamming_loss": 0.0, "macro_auc": None, "auc_source": None}
    y_true, y_pred = binarize(gold, labels), binarize(pred, labels)
    if yes_probs is not None:
        y_score, source = np.array([[p.get(lab, 0.0) for lab in labels] for p in yes_probs]), "yes_probability"
    else:
        y_score, source = y_pred, "binary"
    return {"macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
            "hamming_loss": float(hamming_loss(y_true, y_pred)),
            "macro_auc": macro_auc(y_true, y_score), "auc_source": source}


def binary(gold: list[bool], pred: list[bool]) -> dict:
    from sklearn.metrics import f1_score, precision_score, recall_score

    kw = {"zero_division": 0}
    return {"precision": float(precision_score(gold, pred, **kw)), "recall": float(recall_score(gold, pred, **kw)),
            "f1": float(f1_score(gold, pred, **kw))}
