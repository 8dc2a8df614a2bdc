"""ResNet-18 (10 classes, 224x224) through float training, QAT and Paddle Inference.

Each function is one step of the comparison in benchmarks/qat_compare.py and runs in its
own process (slimext.isolation): JSON in, JSON out, files under `workdir`.
"""
import os
import statistics
import time

import numpy as np

from slimext.compat.tracing import export_tracing

NUM_TRAIN = 500
NUM_VAL = 200
BATCH_SIZE = 16
IMAGE_SHAPE = [3, 224, 224]
METHODS = ("paddleslim_qat", "residual_qat")


def _data(split, seed, sizes=None):
    """sizes: optional {"train": n, "val": m} for a smaller smoke run."""
    from slimext.data.demo_classification import make_split

    count = (sizes or {}).get(split, NUM_TRAIN if split == "train" else NUM_VAL)
    return make_split(count, seed + (0 if split == "train" else 1000))


def _batches(images, labels, seed):
    order = np.random.default_rng(seed).permutation(len(labels))
    for start in range(0, len(order) - BATCH_SIZE + 1, BATCH_SIZE):
        index = order[start:start + BATCH_SIZE]
        yield images[index], labels[index]


def _build():
    import paddle

    return paddle.vision.models.resnet18(num_classes=10)


def _train(model, epochs, lr, seed, sizes=None):
    """SGD with momentum and cosine decay; returns the median step time in ms."""
    import paddle

    paddle.seed(seed)
    images, labels = _data("train", seed, sizes)
    steps = epochs * (len(labels) // BATCH_SIZE)
    schedule = paddle.optimizer.lr.CosineAnnealingDecay(lr, T_max=steps)
    optimizer = paddle.optimizer.Momentum(schedule, momentum=0.9, weight_decay=1e-4,
                                          parameters=model.parameters())
    model.train()
    step_ms = []
    for epoch in range(epochs):
        for x, y in _batches(images, labels, seed + epoch):
            start = time.perf_counter()
            loss = paddle.nn.functional.cross_entropy(model(paddle.to_tensor(x)),
                                                      paddle.to_tensor(y))
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            schedule.step()
            step_ms.append((time.perf_counter() - start) * 1000.0)
    model.eval()
    # The first steps build kernels and caches; they are not what a step costs.
    return statistics.median(step_ms[3:] if len(step_ms) > 6 else step_ms)


def _dygraph_accuracy(model, seed, sizes=None):
    import paddle

    images, labels = _data("val", seed, sizes)
    model.eval()
    correct = 0
    with paddle.no_grad():
        for start in range(0, len(labels), 50):
            logits = model(paddle.to_tensor(images[start:start + 50]))
            correct += int((logits.numpy().argmax(1) == labels[start:start + 50]).sum())
    return correct / len(labels)


def _input_spec():
    import paddle

    return [paddle.static.InputSpec([None] + IMAGE_SHAPE, "float32", "image")]


def model_size_mb(model_dir):
    return sum(os.path.getsize(os.path.join(model_dir, name))
               for name in ("model.pdmodel", "model.pdiparams")) / 1e6


def train_float(workdir, epochs, seed, sizes=None):
    import paddle

    model = _build()
    step_ms = _train(model, epochs, lr=0.05, seed=seed, sizes=sizes)
    os.makedirs(workdir, exist_ok=True)
    paddle.save(model.state_dict(), os.path.join(workdir, "float.pdparams"))
    # Accuracy first: exporting turns `forward` into a static function.
    accuracy = _dygraph_accuracy(model, seed, sizes)
    model_dir = os.path.join(workdir, "float")
    with export_tracing():  # the old-IR .pdmodel Paddle Inference's oneDNN passes take
        paddle.jit.save(paddle.jit.to_static(model, input_spec=_input_spec(), full_graph=True),
                        os.path.join(model_dir, "model"))
    return {"accuracy": accuracy, "step_ms": step_ms, "model_dir": model_dir,
            "size_mb": model_size_mb(model_dir)}


def _quantize(method, model):
    """The QAT-wrapped model and a function that exports it to a path prefix."""
    import paddle

    from slimext.quant.settings import DEFAULT_QUANT_CONFIG

    if method == "paddleslim_qat":
        from paddleslim import QAT

        quanter = QAT(config=dict(DEFAULT_QUANT_CONFIG))
        model = quanter.quantize(model)

        def save(m, path):
            with export_tracing():
                quanter.save_quantized_model(m, path, _input_spec())

        return model, save
    if method == "residual_qat":
        from slimext.quant import QATQuantizer

        qat = QATQuantizer(backend="onednn")
        model = qat(model, example_inputs=[paddle.randn([1] + IMAGE_SHAPE)])
        return model, lambda m, path: qat.save_quantized_model(m, path, _input_spec())
    raise ValueError("method must be one of {}, got {!r}".format(", ".join(METHODS), method))


def train_qat(workdir, method, epochs, seed, sizes=None):
    import paddle

    model = _build()
    model.set_state_dict(paddle.load(os.path.join(workdir, "float.pdparams")))
    model, export = _quantize(method, model)
    step_ms = _train(model, epochs, lr=0.002, seed=seed, sizes=sizes)
    accuracy = _dygraph_accuracy(model, seed, sizes)
    model_dir = os.path.join(workdir, method)
    export(model, os.path.join(model_dir, "model"))
    return {"accuracy": accuracy, "step_ms": step_ms, "model_dir": model_dir,
            "size_mb": model_size_mb(model_dir)}


def measure_predictor(model_dir, precision, seed, cpu_threads=2, latency_runs=50, sizes=None):
    """Top-1 accuracy on the val split and median batch-1 latency with Paddle Inference."""
    from paddle import inference

    from slimext.deploy.latency import measure_latency
    from slimext.deploy.predictor import create_config

    predictor = inference.create_predictor(create_config(model_dir, precision, cpu_threads))
    input_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output_handle = predictor.get_output_handle(predictor.get_output_names()[0])

    def run(x):
        input_handle.reshape(x.shape)
        input_handle.copy_from_cpu(x)
        predictor.run()
        return output_handle.copy_to_cpu()

    images, labels = _data("val", seed, sizes)
    predictions = [int(run(images[i:i + 1]).argmax()) for i in range(len(labels))]
    latency = measure_latency(lambda: run(images[:1]), runs=latency_runs, warmup=10)
    return {"accuracy": float(np.mean(np.array(predictions) == labels)),
            "latency_ms": latency.median_ms, "precision": precision,
            "cpu_threads": cpu_threads}
