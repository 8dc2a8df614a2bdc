"""multiclass_nms3 -> ONNX NonMaxSuppression plus the gathers that give Paddle's outputs.

Paddle's op returns Out [K, 6] rows of (class, score, x1, y1, x2, y2), NmsRoisNum [N] (rows
per image) and Index [K, 1]. Here: NonMaxSuppression per class -> scores and boxes gathered
by its (image, class, box) triples -> the keep_top_k best by score (rows come out sorted by
score, Paddle's come grouped by class: the same set) -> the rows and the count per image.

Differences a deployment engineer should know (docs/onnx.md):
- keep_top_k is applied over the whole batch (per image for batch 1, the exports' batch);
- nms_top_k (candidates per class before NMS) is kept by zeroing the scores below each
  class's nms_top_k-th best; a tie at that score keeps every tied box;
- nms_eta (adaptive NMS) other than 1 is refused.
"""
import numpy as np

from slimext.onnx.op_converters import converts

INT64, FLOAT, INT32 = 7, 1, 6   # onnx.TensorProto data types


def nms_inputs(op):
    """The (boxes, scores) variables NMS reads: the raw outputs of a --no_nms export."""
    return op.input("BBoxes"), op.input("Scores")


@converts("multiclass_nms3", "multiclass_nms2", "multiclass_nms")
def multiclass_nms(g, op):
    if op.inputs.get("RoisNum"):
        g.unsupported(op, "RoisNum input (LoD boxes of two-stage detectors)")
    if abs(float(op.attrs.get("nms_eta", 1.0)) - 1.0) > 1e-6:
        g.unsupported(op, "adaptive NMS (nms_eta {})".format(op.attrs["nms_eta"]))
    boxes_name, scores_name = nms_inputs(op)
    if g.rank(scores_name) != 3:
        g.unsupported(op, "scores of rank {} (only [N, classes, boxes])".format(
            g.rank(scores_name)))
    boxes, scores = g.value(boxes_name), g.value(scores_name)
    keep_top_k = int(op.attrs.get("keep_top_k", -1))
    nms_top_k = int(op.attrs.get("nms_top_k", -1))
    per_class = keep_top_k if keep_top_k > 0 else (nms_top_k if nms_top_k > 0 else 100000)

    nms_scores = scores
    if nms_top_k > 0:
        nms_scores = _only_top_k_per_class(g, scores, nms_top_k)
    nms_boxes = boxes
    if not op.attrs.get("normalized", True):
        # Paddle's un-normalized IoU counts pixels (x2 - x1 + 1): the same as x2 + 1.
        nms_boxes = g.node("Add", [boxes, g.constant(np.asarray([0, 0, 1, 1], np.float32))])
    selected = g.node("NonMaxSuppression", [
        nms_boxes, nms_scores, g.int64s([per_class], "max_per_class"),
        g.constant(np.asarray([op.attrs.get("nms_threshold", 0.3)], np.float32), "iou"),
        g.constant(np.asarray([op.attrs.get("score_threshold", 0.0)], np.float32), "score")])

    def column(index):
        return g.node("Slice", [selected, g.int64s([index]), g.int64s([index + 1]),
                                g.int64s([1])])

    image, label, box = column(0), column(1), column(2)
    background = int(op.attrs.get("background_label", -1))
    if background >= 0:
        keep = g.node("Not", [g.node("Equal", [label, g.int64s([[background]])])])
        keep = g.node("Squeeze", [keep, g.int64s([1])])
        selected = g.node("Compress", [selected, keep], axis=0)
        image, label, box = column(0), column(1), column(2)
    score = g.node("GatherND", [scores, selected])                               # [K]
    coords = g.node("GatherND", [boxes, g.node("Concat", [image, box], axis=1)])  # [K, 4]

    count = g.node("Shape", [score])
    if keep_top_k > 0:
        count = g.node("Min", [count, g.int64s([keep_top_k])])
    score, order = g.node("TopK", [score, count], [g.fresh("score"), g.fresh("order")],
                          axis=0, largest=1, sorted=1)
    label, coords = g.node("Gather", [label, order], axis=0), \
        g.node("Gather", [coords, order], axis=0)
    image = g.node("Gather", [image, order], axis=0)
    columns = [g.node("Cast", [label], to=FLOAT), g.node("Unsqueeze", [score, g.int64s([1])]),
               coords]
    g.node("Concat", columns, op.output("Out"), axis=1)

    if op.output("NmsRoisNum"):
        # Rows per image: compare each row's image index with 0..N-1 and count.
        images = g.node("Range", [g.constant(np.int64(0)), g.node("Squeeze", [g.node(
            "Slice", [g.node("Shape", [scores]), g.int64s([0]), g.int64s([1])]),
            g.int64s([0])]), g.constant(np.int64(1))])
        hits = g.node("Cast", [g.node("Equal", [image, g.node(
            "Unsqueeze", [images, g.int64s([0])])])], to=INT32)
        g.node("ReduceSum", [hits, g.int64s([0])], op.output("NmsRoisNum"), keepdims=0)
    if op.output("Index") and g.program.consumers(op.output("Index")) or \
            op.output("Index") in g.program.fetches:
        per_image = g.node("Slice", [g.node("Shape", [boxes]), g.int64s([1]), g.int64s([2])])
        flat = g.node("Add", [g.node("Mul", [image, per_image]),
                              g.node("Gather", [box, order], axis=0)])
        g.node("Cast", [flat], op.output("Index"), to=INT32)


def _only_top_k_per_class(g, scores, k):
    """Scores [N, C, M] with all but each class's k best set to 0 (below any threshold)."""
    boxes = g.node("Slice", [g.node("Shape", [scores]), g.int64s([2]), g.int64s([3])])
    k = g.node("Min", [boxes, g.int64s([k])])
    best = g.node("TopK", [scores, k], [g.fresh("best"), g.fresh("best_index")], axis=2,
                  largest=1, sorted=1)[0]
    last = g.node("Sub", [k, g.int64s([1])])
    kth = g.node("Gather", [best, last], axis=2)   # [N, C, 1]
    keep = g.node("Not", [g.node("Less", [scores, kth])])
    return g.node("Where", [keep, scores, g.constant(np.float32(0.0), "zero")])
