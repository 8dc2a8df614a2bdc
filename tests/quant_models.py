"""Small real models used by the quantization tests."""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F


class ResidualBlock(nn.Layer):
    """conv-bn-relu-conv-bn plus identity, written as `y + x` in forward."""

    def __init__(self, channels):
        super().__init__()
        self.conv1 = nn.Conv2D(channels, channels, 3, padding=1, bias_attr=False)
        self.bn1 = nn.BatchNorm2D(channels)
        self.conv2 = nn.Conv2D(channels, channels, 3, padding=1, bias_attr=False)
        self.bn2 = nn.BatchNorm2D(channels)

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + x)


class ResidualNet(nn.Layer):
    def __init__(self, channels=16, blocks=2, classes=4):
        super().__init__()
        self.stem = nn.Conv2D(3, channels, 3, stride=2, padding=1)
        self.blocks = nn.Sequential(*[ResidualBlock(channels) for _ in range(blocks)])
        self.head = nn.Conv2D(channels, classes, 1)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        return self.head(x).mean(axis=[2, 3])


class MixedJoins(nn.Layer):
    """Joins written every way a forward can: `+`, paddle.add, concat, `-`, in a loop,
    in a nested sublayer; plus constant and bias adds that are not joins."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2D(3, 8, 3, padding=1)
        self.branches = nn.LayerList([nn.Conv2D(8, 8, 1) for _ in range(3)])
        self.inner = ResidualBlock(8)
        self.fuse = nn.Conv2D(16, 8, 1)
        self.out = nn.Conv2D(8, 2, 1)
        self.register_buffer("offset", paddle.ones([1, 8, 1, 1]))

    def forward(self, x):
        x = self.stem(x)
        x = x + 1.0                      # scalar: not a join
        x = x + self.offset              # constant buffer: not a join
        for branch in self.branches:     # three joins from one line in a loop
            x = x + branch(x)
        x = self.inner(x)                # nested sublayer with its own join
        y = paddle.add(self.branches[0](x), x)
        z = paddle.concat([x, y], axis=1)
        d = self.fuse(z) - x
        return self.out(d)


class SqueezeExcite(nn.Layer):
    """LCNet's SE block: the input scaled by a gate computed from its pooled channels."""

    def __init__(self, channels):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.reduce = nn.Conv2D(channels, channels // 4, 1)
        self.expand = nn.Conv2D(channels // 4, channels, 1)

    def forward(self, x):
        gate = F.hardsigmoid(self.expand(F.relu(self.reduce(self.pool(x)))))
        return paddle.multiply(x, gate)


class GatedNet(nn.Layer):
    """conv + hardswish, an SE gate, a scalar multiply (not a join), a product of two
    same-shaped maps, a head conv with bias."""

    def __init__(self, channels=16, classes=4):
        super().__init__()
        self.stem = nn.Conv2D(3, channels, 3, stride=2, padding=1)
        self.se = SqueezeExcite(channels)
        self.mix = nn.Conv2D(channels, channels, 1)
        self.head = nn.Conv2D(channels, classes, 1)

    def forward(self, x):
        x = self.se(F.hardswish(self.stem(x))) * 0.5
        x = F.relu(self.mix(x)) * F.sigmoid(x)
        return self.head(x).mean(axis=[2, 3])


class TwoLevelScores(nn.Layer):
    """A detection head's per-level scoring: sigmoid(cls) * sigmoid(iou) (a broadcast
    product) for level 0 runs before level 1's convs; no layer takes the scores."""

    def __init__(self, channels=8, classes=4):
        super().__init__()
        self.stem = nn.Conv2D(3, channels, 3, padding=1)
        self.cls = nn.LayerList([nn.Conv2D(channels, classes, 1) for _ in range(2)])
        self.iou = nn.LayerList([nn.Conv2D(channels, 1, 1) for _ in range(2)])

    def forward(self, x):
        feats = [self.stem(x), F.avg_pool2d(self.stem(x), 2)]
        scores = [F.sigmoid(self.cls[i](f)) * F.sigmoid(self.iou[i](f))
                  for i, f in enumerate(feats)]
        return paddle.concat([s.flatten(2) for s in scores], axis=2)


class TwoLevelBoxes(nn.Layer):
    """GFL's per-level decoding: each level's box corners are joined (a concat of two
    activations, through a reshape) before the next level's convs run; only the output
    reads the boxes. The last line's residual add does feed a conv."""

    def __init__(self, channels=8):
        super().__init__()
        self.stem = nn.Conv2D(3, channels, 3, padding=1)
        self.reg = nn.LayerList([nn.Conv2D(channels, 4, 1) for _ in range(2)])
        self.mix = nn.Conv2D(channels, channels, 1)

    def forward(self, x):
        feats = [self.stem(x), F.avg_pool2d(self.stem(x), 2)]
        boxes = []
        for i, f in enumerate(feats):
            distances = self.reg[i](f).flatten(2).transpose([0, 2, 1])
            corners = paddle.concat([-distances[:, :, :2], distances[:, :, 2:]], axis=-1)
            boxes.append(corners.reshape([0, -1, 4]))
        mixed = self.mix(feats[0] + feats[0].exp())
        return paddle.concat(boxes, axis=1), mixed


def example_input(size=32, batch=1):
    paddle.seed(0)
    return paddle.randn([batch, 3, size, size])


def train_steps(model, steps=4, size=32):
    """A few SGD steps so BN statistics and moving-average scales are real. The loss is
    the raw outputs' energy (thousands on these nets), so the gradient is clipped: without
    that, one step can take a residual net to inf once the first scales stop clipping."""
    model.train()
    optimizer = paddle.optimizer.SGD(0.01, parameters=model.parameters(),
                                     grad_clip=paddle.nn.ClipGradByGlobalNorm(1.0))
    for step in range(steps):
        paddle.seed(step)
        loss = model(paddle.randn([4, 3, size, size])).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
    model.eval()
    return model


class Attention(nn.Layer):
    """Self-attention as ppdet's MultiHeadAttention writes it: linear projections, then
    two matmuls of activations (q @ k^T, softmax weights @ v); `at_operator` writes the
    first one as `q @ k^T`, a spelling interception does not patch."""

    def __init__(self, dim=8, at_operator=False):
        super().__init__()
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim)
        self.v = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.at_operator = at_operator

    def forward(self, x):
        q, k, v = self.q(x), self.k(x), self.v(x)
        product = q @ k.transpose([0, 2, 1]) if self.at_operator else \
            paddle.matmul(q, k, transpose_y=True)
        weights = F.softmax(product * 0.35)
        return self.out(paddle.matmul(x=weights, y=v))


def tokens_input(tokens=6, dim=8):
    paddle.seed(0)
    return paddle.randn([1, tokens, dim])
