"""Instance crops get the whole image's boundary method: the feature maps are cropped with each box."""

import numpy as np

import stylemix
import stylemix.config as config
import stylemix.instances as instances
from stylemix.detect import Detections


def test_instance_crops_get_the_cropped_feature_maps(monkeypatch):
    rng = np.random.default_rng(0)
    region = np.zeros((32, 32), int)
    region[8:24, 6:22] = 1
    stack = rng.normal(size=(8, 3, 2))[..., region].astype(np.float32)  # [N, C, 32, 32]
    image = np.repeat((region * 255).astype(np.uint8)[..., None], 3, axis=2)
    features = rng.normal(size=(5, 64, 64)).astype(np.float32)  # twice the analysis resolution, as the default's
    seen = []
    finish = instances.finish_probability

    def spy(prob, size, guide, **kwargs):
        seen.append((prob.shape, kwargs["boundary"], kwargs["features"]))
        return finish(prob, size, guide, **kwargs)

    monkeypatch.setattr(instances, "finish_probability", spy)
    found = Detections([[6, 8, 22, 24]], [0], [0.9], {0: "thing"})
    inst = instances.segment_instances(image, stack, found, stylemix.SegmentConfig(), 0,
                                       config.InstanceConfig(max_box_fill=1.0), features=features)
    assert inst.records[0].kept
    x0, y0, x1, y1 = inst.records[0].crop  # image pixels = analysis pixels here (32 px image)
    (shape, boundary, crop), *_ = seen
    assert boundary == "features-matting" and shape == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(crop, features[:, 2 * y0:2 * y1, 2 * x0:2 * x1])
    seen.clear()
    instances.segment_instances(image, stack, found, stylemix.SegmentConfig(), 0,
                                config.InstanceConfig(max_box_fill=1.0))
    assert seen[0][2] is None  # no maps given: the method's image-only fallback
