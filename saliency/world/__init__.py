"""The synthetic world: seeded scenes where the salient thing is known, the data of every demo, benchmark and test.

`rules` (what a scene holds and how one is drawn), `render` (drawing it), `gaze` (where observers look: fixations
and density maps), `vocabulary` and `captions` (the words that name an actor, and the captions made of them),
`writers` (the SALICON, DHF1K and MSR-VTT layouts the real loaders read), `baselines` (what no learning, the
centre and the world itself reach). Both packages use it through the names below.
"""
from saliency.world.baselines import BASELINES, baseline_scores, centre_prior, gaussian_blob, saturation_blob
from saliency.world.captions import CAPTION_TEMPLATES, caption_from_template, caption_variants
from saliency.world.gaze import (GAZE_SHARES, GazeModel, ObserverGaze, all_fixations, density_map, density_sigma,
                                 sample_gaze)
from saliency.world.render import actor_box, actor_centre, actor_mask, actor_radius, distractor_masks, render_frame
from saliency.world.rules import (ACTOR_MARGIN, COLOURS, EXTENT, MOTION_GAIN, MOTIONS, OBSERVERS, SHAPE_PRIORITY,
                                  SHAPES, SIZE_GAIN, SIZES, SIZES_V2, WORLDS, Scene, SceneObject, Sprite,
                                  check_world, dhf1k_scene, image_scene, sample_scene, video_rngs)
from saliency.world.vocabulary import (ATTRIBUTES, MOTION_PHRASES, SHAPE_WORDS, SIZE_WORDS, VOCABULARY,
                                       caption_words, named_values)
from saliency.world.writers import (META_NAME, MSRVTT_SPLITS, SALICON_SPLITS, check_size, prepare_output_dir,
                                    read_meta, scene_record, split_counts, video_scene, write_dhf1k,
                                    write_dhf1k_frame, write_json, write_msrvtt, write_salicon, write_salicon_sample)

__all__ = [
    "ACTOR_MARGIN", "ATTRIBUTES", "BASELINES", "CAPTION_TEMPLATES", "COLOURS", "EXTENT", "GAZE_SHARES", "GazeModel",
    "META_NAME", "MOTIONS", "MOTION_GAIN", "MOTION_PHRASES", "MSRVTT_SPLITS", "OBSERVERS", "ObserverGaze",
    "SALICON_SPLITS", "SHAPES", "SHAPE_PRIORITY", "SHAPE_WORDS", "SIZES", "SIZES_V2", "SIZE_GAIN", "SIZE_WORDS",
    "Scene", "SceneObject", "Sprite", "VOCABULARY", "WORLDS", "actor_box", "actor_centre", "actor_mask",
    "actor_radius", "all_fixations", "baseline_scores", "caption_from_template", "caption_variants", "caption_words",
    "centre_prior", "check_size", "check_world", "density_map", "density_sigma", "dhf1k_scene", "distractor_masks",
    "gaussian_blob", "image_scene", "named_values", "prepare_output_dir", "read_meta", "render_frame",
    "sample_gaze", "sample_scene", "saturation_blob", "scene_record", "split_counts", "video_rngs", "video_scene",
    "write_dhf1k", "write_dhf1k_frame", "write_json", "write_msrvtt", "write_salicon", "write_salicon_sample",
]
