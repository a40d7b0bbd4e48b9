"""A mean IoU that counts classes absent from both truth and prediction as IoU 0.

Symptom: count as IoU 0
"""

from minifcn.backend import get_array_module


def confusion_matrix(prediction, target, num_classes, ignore_index=255):
    xp = get_array_module(target)
    valid = target != ignore_index
    pairs = target[valid].astype(xp.int64) * num_classes + prediction[valid]
    counts = xp.bincount(pairs, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(xp.int64)


def mean_iou(confusion):
    xp = get_array_module(confusion)
    intersection = xp.diag(confusion)
    union = confusion.sum(axis=1) + confusion.sum(axis=0) - intersection
    iou = intersection / xp.maximum(union, 1)
    return float(iou.mean())
