"""ppdet 2.6.0's Quality Focal Loss (GFL's classification loss) on Paddle 3: it weighs the
negative and positive terms by a bool mask (`loss * logical_not(mask)`), and Paddle 3's
type promotion refuses float32 * bool, so GFL cannot train.

The replacement computes the same loss (Generalized Focal Loss, Li et al. 2020, eq. 3) with
the masks as float32: every class of every anchor is a negative (target quality 0, modulated
by sigmoid(pred)^beta) except the anchor's own class where it is a positive (target = the
anchor's IoU quality, modulated by |quality - sigmoid(pred)|^beta). ppdet's loss layer calls
the module-level function, so the module attribute is what is replaced.
"""
import inspect

UNCAST_MASK = "loss * paddle.logical_not(pos_mask) + loss_pos * pos_mask"


def multiplies_by_bool_mask(function):
    """True for ppdet 2.6.0's loss, also once this fix has replaced it (it reads the
    function it replaced): the fix is needed there, applied or not."""
    function = getattr(function, "replaces", function)
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return UNCAST_MASK in " ".join(source.split())


def quality_focal_loss(pred, target, beta=2.0, use_sigmoid=True):
    """Per-anchor QFL [N] of pred [N, C] for target (label [N], quality [N]); a label
    outside [0, C) is background."""
    import paddle
    import paddle.nn.functional as F

    label, quality = target
    cross_entropy = F.binary_cross_entropy_with_logits if use_sigmoid else \
        F.binary_cross_entropy
    prob = F.sigmoid(pred) if use_sigmoid else pred
    num_classes = pred.shape[1]
    label = label.astype("int64").reshape([-1])
    foreground = paddle.logical_and(label >= 0, label < num_classes).astype("float32")
    # one-hot of the anchor's class, zero for background anchors
    positive = F.one_hot(paddle.clip(label, 0, num_classes - 1), num_classes) * \
        foreground.unsqueeze(-1)
    quality = quality.astype("float32").reshape([-1, 1]).expand([-1, num_classes])
    negative_term = cross_entropy(pred, paddle.zeros_like(pred), reduction="none") * \
        prob.pow(beta)
    positive_term = cross_entropy(pred, quality, reduction="none") * \
        (quality - prob).abs().pow(beta)
    return (negative_term * (1.0 - positive) + positive_term * positive).sum(axis=1)


def use_float_masks_in_quality_focal_loss():
    from ppdet.modeling.losses import gfocal_loss

    if gfocal_loss.quality_focal_loss is not quality_focal_loss and \
            multiplies_by_bool_mask(gfocal_loss.quality_focal_loss):
        quality_focal_loss.replaces = gfocal_loss.quality_focal_loss   # kept for tests
        gfocal_loss.quality_focal_loss = quality_focal_loss
    return gfocal_loss.quality_focal_loss is quality_focal_loss
