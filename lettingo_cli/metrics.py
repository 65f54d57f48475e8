"""Accuracy and F1 of sentiment predictions: one definition for eval, the trained predictors' reports and the
benchmarks."""

from __future__ import annotations

from lettingo_cli.sentiments import SENTIMENTS

METRICS = ("accuracy", "macro_f1", "weighted_f1")


def metrics(predictions: list[tuple[str, str]]) -> dict:
    """accuracy, macro and weighted F1 over (truth, predicted) pairs, and the confusion matrix."""
    confusion = {truth: dict.fromkeys(SENTIMENTS, 0) for truth in SENTIMENTS}
    for truth, predicted in predictions:
        confusion[truth][predicted] += 1
    total = len(predictions)
    correct = sum(confusion[label][label] for label in SENTIMENTS)
    f1s, supports = {}, {}
    for label in SENTIMENTS:
        true_positive = confusion[label][label]
        predicted_as = sum(confusion[truth][label] for truth in SENTIMENTS)
        support = sum(confusion[label].values())
        precision = true_positive / predicted_as if predicted_as else 0.0
        recall = true_positive / support if support else 0.0
        f1s[label] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        supports[label] = support
    return {
        "n": total,
        "accuracy": correct / total if total else 0.0,
        "macro_f1": sum(f1s.values()) / len(f1s),
        "weighted_f1": sum(f1s[label] * supports[label] for label in SENTIMENTS) / total if total else 0.0,
        "f1": f1s,
        "confusion": confusion,
    }
