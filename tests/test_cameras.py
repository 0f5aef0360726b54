import numpy as np

from maldnerf.cameras import Cameras, Frame, load_transforms, opencv_to_opengl, write_transforms


def test_opencv_opengl_conversion_flips_y_and_z_and_is_an_involution():
    c2w = np.eye(4)
    c2w[:3, 3] = [1, 2, 3]
    gl = opencv_to_opengl(c2w)
    assert np.allclose(gl[:3, 1], [0, -1, 0]) and np.allclose(gl[:3, 2], [0, 0, -1])
    assert np.allclose(gl[:3, 3], [1, 2, 3])
    assert np.allclose(opencv_to_opengl(gl), c2w)


def test_transforms_round_trip_with_relative_paths(tmp_path):
    (tmp_path / "scene" / "images").mkdir(parents=True)
    image = tmp_path / "scene" / "images" / "a.png"
    image.write_bytes(b"")
    c2w = np.eye(4)
    c2w[:3, 3] = [0.5, -1.0, 2.0]
    cameras = Cameras(10, 8, 9.0, 9.5, 5.0, 4.0, [Frame("a", "train", image, None, c2w, 0.1, 5.0)])
    path = write_transforms(tmp_path / "poses" / "transforms.json", cameras)
    text = path.read_text()
    assert '"file_path": "../scene/images/a.png"' in text and "OpenGL" in text
    back = load_transforms(path)
    assert back.frames[0].image.resolve() == image.resolve()
    assert np.allclose(back.frames[0].camera_to_world, c2w)
    assert (back.fx, back.fy, back.cx, back.cy, back.width, back.height) == (
        9.0,
        9.5,
        5.0,
        4.0,
        10,
        8,
    )


def test_synthetic_known_poses_project_the_object_onto_its_mask(synthetic_scene):
    """Convention check: the object's box centre projects inside each view's object mask."""
    import json

    from maldnerf.images import read_mask

    scene = synthetic_scene / "scene"
    cameras = load_transforms(scene / "known_poses.json")
    centre = np.array(json.loads((scene / "scene.json").read_text())["object_box"]["center"])
    for frame in cameras.split("train"):
        camera = np.linalg.inv(frame.camera_to_world) @ np.append(centre, 1.0)
        assert camera[2] < 0  # in front: OpenGL cameras look along -z
        u = cameras.fx * camera[0] / -camera[2] + cameras.cx
        v = -cameras.fy * camera[1] / -camera[2] + cameras.cy
        assert read_mask(frame.mask)[int(v), int(u)]
