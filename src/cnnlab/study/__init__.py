"""The study: the reports' networks on the CIFAR-10 and ImageNet10 stand-ins (or the real
datasets), one module per stage: `prepare` (decode a dataset once), `study` (one cell of the
dataset x model matrix), `transfer` (a cell of the transfer matrix: few training images, a
pretrained backbone), `pretrain` (the backbone the transfer cells load)."""
