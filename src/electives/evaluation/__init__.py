"""How well a model predicts: metrics, the held-out evaluation against baselines, the report files and the synthetic university's ground-truth lift."""
