"""The mutation score of each module mutmut tests, from the results of a ``mutmut run``.

    mutmut run                                  # in the repository root, long: [tool.mutmut] in pyproject.toml
    python -m benchmarks.mutation_report --json benchmarks/results/mutation.json

mutmut (a well-kept mutation tester, ``pip install mutmut``) makes small
deliberate bugs ("mutants") in the modules listed in ``pyproject.toml``
(losses, layers, mlp, optim, trainer, checkpoint, teacher, data, download,
jitter, elastic), runs the tests that cover each, and records whether some test
failed (*killed*) or all passed (*survived*).  This script reads those results
(``mutmut results --all true``) and prints, per module,

    score = (killed + timeouts) / (mutants checked - survivors shown equivalent)

A survivor is *equivalent* when no input the library accepts can tell it
from the original (a batch size that only changes the batching, the array
module of a NumPy array on a CPU-only run, a check flag on valid inputs);
:data:`EQUIVALENT` gives each one a line saying why.  Mutants mutmut has not
checked yet (an interrupted run: it resumes where it stopped) are counted
apart, so an incomplete module says so rather than showing a score it has
not earned.
"""

import argparse
import collections
import json
import subprocess
import sys

from benchmarks.common import command_line, git_commit, machine, now, write_record

MODULES = ("losses", "layers", "mlp", "optim", "trainer", "checkpoint", "teacher", "data", "download", "jitter", "elastic")

#: Why a surviving mutant cannot be told apart from the original (or only on a GPU), one line each.
CPU_ONLY = "get_array_module(None) is NumPy: the same module for NumPy arrays; only a CuPy run (a GPU) differs"
NEGATIVE_SIZE = "NumPy reads any negative size in reshape as 'infer', like -1"
CAST = "assigning into an existing array casts to its dtype anyway"
CHECK = "the check only validates its input, and every input reaching this call is finite"
BATCHING = "rows are independent: another batch size gives the same numbers"
NO_CONFIG = "no file nanokd writes holds both a config and a signature, so the test is the same"
RATIO = "ratio caches log_ratio(z, v, T); recomputing it, or computing it at alpha 0, gives the same numbers"
CHECK_OFF = ("the pair checks its inputs first (or the training loop has, before it passes check=False): checking "
             "them again or not changes nothing but time")
V_UNUSED = "given ratio (and at alpha 0, with no soft term), the loss never reads v"
FUSED_CALL = "the call of the GPU fast path, which never runs on NumPy arrays; tests/test_fused.py's CuPy tests see it"
BUFFER = "out=None: the shifted images go to a new array instead of the reused buffer, the same numbers"
COPY = "astype's copy flag: the same values, a copy or not"
BAR = "the progress bar (its total, count, leave flag, running loss): what the bar shows, not what is trained"
NETWORK = ("urllib_fetch's timeout or copy chunk: the real download, which needs a network (tests use a fake "
           "fetcher, and one test runs it on file:// URLs, where neither shows)")
OPTIMIZER_KEY = "a key's name in the signature's optimizer entry: another optimizer or lr still changes it"
GPU_BRANCH = ("in the CuPy branch, which the CPU never runs: test_mlp.py's test_max_norm_projects_columns[cupy] "
              "(a GPU) sees it")
BUFFER_NAME = "the name of a layer's scratch buffer: another name no other buffer of the layer uses, the same arrays"
NEW_KEEP = ("the keep indicators go to a new array each call instead of the layer's reused buffer: the same "
            "indicators (the mask they make is still the reused buffer)")
PAIR_DEVICE = ("the device check of z and v, which only a CuPy array with a NumPy one fails: "
               "test_losses.py's test_logits_on_two_devices_are_refused, on a GPU")
TIMES_ZERO = ("at alpha = 0 (or 1) the term computed, or its stand-in, is multiplied by alpha = 0 (or 1 - alpha): "
              "the same finite loss and gradient")
BOUNDARY = ("l exactly at the split between two forms takes the other form, which is as accurate there (neither "
            "cancels at the split): the same value to the last bits")
BEFORE_FORWARD = "backward before any forward fails either way: neither None nor '' is an array"
HIDDEN_DROPOUT = ("the hidden dropout writes into a buffer of its own instead of the ReLU output it drops "
                  "from: the same values")
INDEX_TYPE = ("the integer type of warp's gather indices: int32 and int64 reach the same pixels while the "
              "framed images hold fewer than 2^31 values (2.2 million 28 x 28 images in one call; distort warps "
              "2,048 at a time), and a test cannot hold the 8 GB of images beyond that")
EQUIVALENT = {
    "nanokd.optim.x_pieces__mutmut_2": "all the arrays have one size, so arrays[1].size is arrays[0].size",
    "nanokd.optim.x_pieces__mutmut_4": "at n == BLOCK the loop yields the one whole piece the shortcut yields",
    "nanokd.optim.x_pieces__mutmut_9": "reshape(None) keeps the shape: the pieces become row blocks, still a "
                                       "partition of the array (only slower)",
    "nanokd.optim.x_pieces__mutmut_11": NEGATIVE_SIZE,
    "nanokd.optim.xǁ_Scratchǁlike__mutmut_2": CPU_ONLY,
    "nanokd.optim.xǁ_Scratchǁlike__mutmut_3": "a fresh scratch array each call instead of a reused one: the same "
                                              "numbers, more allocation",
    "nanokd.optim.xǁ_Scratchǁlike__mutmut_4": "the same: get(None) never finds a buffer, so one is made each call",
    "nanokd.optim.xǁ_Scratchǁlike__mutmut_8": "a float64 scratch: lr * g is rounded once, in the float32 "
                                              "subtraction, instead of twice; below the last bit of the weights",
    "nanokd.optim.xǁ_Scratchǁlike__mutmut_10": "the same float64 scratch (dtype left to its default)",
    "nanokd.optim.xǁ_Scratchǁlike__mutmut_11": CPU_ONLY,
    "nanokd.optim.xǁ_Scratchǁlike__mutmut_12": "each key (size, dtype, module) is only ever asked for in one shape",
    "nanokd.optim.xǁSGDǁ__init____mutmut_29": CPU_ONLY,
    "nanokd.optim.xǁSGDǁ_update__mutmut_2": CPU_ONLY,
    "nanokd.optim.xǁSGDǁload_state__mutmut_7": CAST,
    "nanokd.optim.xǁSGDǁload_state__mutmut_9": CAST,
    "nanokd.optim.xǁSGDǁload_state__mutmut_10": CPU_ONLY,
    "nanokd.optim.xǁAdamǁ__init____mutmut_32": CPU_ONLY,
    "nanokd.optim.xǁAdamǁ__init____mutmut_35": CPU_ONLY,
    "nanokd.optim.xǁAdamǁ_update__mutmut_2": CPU_ONLY,
    "nanokd.optim.xǁAdamǁload_state__mutmut_8": "zip stops at the 2n moment buffers whatever the slice's end",
    "nanokd.optim.xǁAdamǁload_state__mutmut_11": CAST,
    "nanokd.optim.xǁAdamǁload_state__mutmut_13": CAST,
    "nanokd.optim.xǁAdamǁload_state__mutmut_14": CPU_ONLY,
    "nanokd.optim.x_linear_ramp__mutmut_2": "with ramp_epochs 0, epoch >= 0 returns end all the same",
    "nanokd.optim.x_linear_ramp__mutmut_4": "at epoch == ramp_epochs the formula gives start + (end - start) = end",
    "nanokd.teacher.x_ensemble_logits__mutmut_21": CHECK,
    "nanokd.teacher.x_ensemble_logits__mutmut_24": CHECK,
    "nanokd.teacher.x_ensemble_logits__mutmut_25": CHECK,
    "nanokd.teacher.x_compute_teacher_logits__mutmut_2": BATCHING,
    "nanokd.teacher.x_evaluate_errors__mutmut_1": BATCHING,
    "nanokd.teacher.x_evaluate_errors__mutmut_30": BATCHING,
    "nanokd.teacher.x_evaluate_errors__mutmut_42": BATCHING,
    "nanokd.teacher.x_evaluate_errors__mutmut_20": "with no rows the model path counts 0 errors too (x.shape[1] is "
                                                   "never 0 for a model's input)",
    "nanokd.mlp.xǁMLPǁload__mutmut_8": NO_CONFIG,
    "nanokd.mlp.xǁMLPǁload__mutmut_9": NO_CONFIG,
    "nanokd.mlp.xǁMLPǁload__mutmut_57": "device left to its default, cpu: differs only when loading onto a GPU",
    "nanokd.mlp.xǁMLPǁload_params__mutmut_11": CAST,
    "nanokd.mlp.xǁMLPǁload_params__mutmut_13": CAST,
    "nanokd.mlp.xǁMLPǁpredict__mutmut_1": BATCHING,
    "nanokd.mlp.x_read_npz__mutmut_22": "np.load's allow_pickle is False by default: None and no argument are False",
    "nanokd.mlp.x_read_npz__mutmut_24": "np.load's allow_pickle is False by default: None and no argument are False",
    "nanokd.losses.x_cross_entropy_and_grad__mutmut_15": CHECK_OFF,
    "nanokd.losses.x_cross_entropy_and_grad__mutmut_22": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_12": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_13": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_14": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_18": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_24": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_25": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_27": V_UNUSED,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_31": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_32": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_39": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_42": V_UNUSED,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_46": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_47": RATIO,
    "nanokd.losses.x_distillation_loss_and_grad__mutmut_54": RATIO,
    "nanokd.trainer.x_shifted_teacher_logits__mutmut_27": "xp.full of an int fills int64 by default",
    "nanokd.trainer.x_shifted_teacher_logits__mutmut_30": "xp.full of an int fills int64 by default",
    "nanokd.trainer.x_shifted_teacher_logits__mutmut_41": BUFFER,
    "nanokd.trainer.x_shifted_teacher_logits__mutmut_45": BUFFER,
    "nanokd.trainer.x_train_step__mutmut_10": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_11": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_12": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_13": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_14": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_15": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_16": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_17": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_28": CHECK_OFF,
    "nanokd.trainer.x_train_step__mutmut_39": CHECK_OFF,
    "nanokd.trainer.x_train_step__mutmut_4": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_5": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_6": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_7": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_8": FUSED_CALL,
    "nanokd.trainer.x_train_step__mutmut_9": FUSED_CALL,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_10": COPY,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_12": COPY,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_19": COPY,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_35": BUFFER,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_40": BUFFER,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_43": COPY,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_45": COPY,
    "nanokd.trainer.xǁ_Runǁcache_soft_targets__mutmut_46": COPY,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_24": BUFFER,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_28": BUFFER,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_39": "a 0-d zeros array is float64 by default",
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_41": "a 0-d zeros array is float64 by default",
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_43": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_45": BAR,
    "nanokd.trainer.xǁ_Runǁsoft_targets__mutmut_13": COPY,
    "nanokd.trainer.x__check_data__mutmut_18": "dtype kinds are single letters, none of them X: 'XXiuXX' admits "
                                               "the same kinds as 'iu'",
    "nanokd.trainer.x__check_finite__mutmut_2": CPU_ONLY,
    "nanokd.trainer.x__check_finite__mutmut_21": NEGATIVE_SIZE,
    "nanokd.trainer.x_train_model__mutmut_51": ("the loop sets the momentum of its own SGD before every epoch "
                                                "(TrainConfig.momentum_at), so the one it starts with is never used"),
    "nanokd.trainer.xǁ_Runǁ__init____mutmut_100": ("the message of a teacher on another device than the student, "
                                                   "which needs a GPU: test_train.py's "
                                                   "test_a_teacher_on_another_device_than_the_student_is_refused"),
    "nanokd.trainer.xǁ_Runǁ__init____mutmut_137": BUFFER,
    "nanokd.trainer.xǁ_Runǁ__init____mutmut_138": BUFFER,
    "nanokd.trainer.xǁ_Runǁ__init____mutmut_139": ("a jitter buffer made without jitter is never used: more "
                                                   "memory only"),
    "nanokd.trainer.xǁ_Runǁ__init____mutmut_61": ("x_val and y_val are read only when validate is True, and then "
                                                  "they are set: '' or None is never read"),
    "nanokd.trainer.xǁ_Runǁsoft_targets__mutmut_4": COPY,
    "nanokd.trainer.xǁ_Runǁsoft_targets__mutmut_6": COPY,
    "nanokd.download.x_file_digest__mutmut_10": "the size of the chunks read: the same digest",
    "nanokd.download.x_file_digest__mutmut_12": "the size of the chunks read: the same digest",
    "nanokd.download.x_file_digest__mutmut_13": "the size of the chunks read: the same digest",
    "nanokd.download.x_file_digest__mutmut_2": "md5's usedforsecurity flag: the same digest",
    "nanokd.download.x_file_digest__mutmut_3": "md5's usedforsecurity flag: the same digest",
    "nanokd.download.x_urllib_fetch__mutmut_13": NETWORK,
    "nanokd.download.x_urllib_fetch__mutmut_16": NETWORK,
    "nanokd.download.x_urllib_fetch__mutmut_17": NETWORK,
    "nanokd.download.x_urllib_fetch__mutmut_18": NETWORK,
    "nanokd.download.x_urllib_fetch__mutmut_19": NETWORK,
    "nanokd.download.x_urllib_fetch__mutmut_2": NETWORK,
    "nanokd.download.x_urllib_fetch__mutmut_4": NETWORK,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_100": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_101": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_102": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_103": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_104": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_105": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_106": ("reading the running loss for the bar on a GPU too: a wait for the "
                                                "device, the same numbers"),
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_107": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_108": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_109": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_110": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_111": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_113": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_114": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_115": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_48": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_49": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_51": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_52": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_53": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_54": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_57": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_58": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_59": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_60": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_64": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_96": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_97": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_98": BAR,
    "nanokd.trainer.xǁ_Runǁepoch__mutmut_99": BAR,
    "nanokd.trainer.xǁ_Runǁsettings__mutmut_57": OPTIMIZER_KEY,
    "nanokd.trainer.xǁ_Runǁsettings__mutmut_58": OPTIMIZER_KEY,
    "nanokd.trainer.xǁ_Runǁsettings__mutmut_60": OPTIMIZER_KEY,
    "nanokd.trainer.xǁ_Runǁsettings__mutmut_61": OPTIMIZER_KEY,
    "nanokd.data.x_num_classes__mutmut_3": "MNIST's and Fashion-MNIST's largest training label is 9: 9 + 1 is "
                                           "NUM_CLASSES",
    "nanokd.data.x_to_float__mutmut_10": NEGATIVE_SIZE,
    "nanokd.jitter.x_draw_shifts__mutmut_8": "the first two rows of a (3, n) draw are the (2, n) draw, and the "
                                           "generator is the shifts' own (epoch_seeds)",
    "nanokd.jitter.x_draw_shifts__mutmut_10": CPU_ONLY,
    "nanokd.jitter.x_draw_shifts__mutmut_19": "floor(u * width) <= width - 1 for u < 1: the bound never bites",
    "nanokd.jitter.x_shift_images__mutmut_2": CPU_ONLY,
    "nanokd.jitter.x_shift_images__mutmut_50": "no image is drawn the extra shift s + 1: its index set is empty",
    "nanokd.jitter.x_shift_images__mutmut_79": "side + min(dy, 1) differs only for dy > 0, where it is side + 1, "
                                             "which slicing clips to side",
    "nanokd.jitter.x_shift_images__mutmut_90": "side + min(dx, 1) differs only for dx > 0, where it is side + 1, "
                                             "which slicing clips to side",
    "nanokd.data.x_balanced_subset__mutmut_23": "rng.choice tests replace for truth: None is False",
    "nanokd.layers.x_bernoulli_keep__mutmut_6": ("getattr without a default: every generator nanokd draws from "
                                                 "(NumPy's and CuPy's Generator) has a bit_generator"),
    "nanokd.layers.x_bernoulli_keep__mutmut_62": BUFFER_NAME,
    "nanokd.layers.x_bernoulli_keep__mutmut_71": BUFFER_NAME,
    "nanokd.layers.x_bernoulli_keep__mutmut_72": BUFFER_NAME,
    "nanokd.layers.x_bernoulli_keep__mutmut_77": "None assigned into a boolean array is False",
    "nanokd.layers.xǁDropoutǁforward__mutmut_9": CPU_ONLY,
    "nanokd.layers.xǁLinearǁ__init____mutmut_4": CPU_ONLY,
    "nanokd.layers.xǁLinearǁ__init____mutmut_7": CPU_ONLY,
    "nanokd.layers.xǁLinearǁ__init____mutmut_8": BEFORE_FORWARD,
    "nanokd.layers.xǁReLUǁ__init____mutmut_1": BEFORE_FORWARD,
    "nanokd.layers.xǁReLUǁforward__mutmut_2": CPU_ONLY,
    "nanokd.layers.xǁLinearǁforward__mutmut_3": CPU_ONLY,
    "nanokd.layers.xǁLinearǁforward__mutmut_6": BUFFER_NAME,
    "nanokd.layers.xǁLinearǁforward__mutmut_14": BUFFER_NAME,
    "nanokd.layers.xǁLinearǁforward__mutmut_15": BUFFER_NAME,
    "nanokd.layers.xǁLinearǁbackward__mutmut_3": CPU_ONLY,
    "nanokd.layers.xǁReLUǁbackward__mutmut_2": CPU_ONLY,
    "nanokd.layers.xǁDropoutǁforward__mutmut_21": NEW_KEEP,
    "nanokd.layers.xǁDropoutǁforward__mutmut_27": NEW_KEEP,
    "nanokd.layers.xǁDropoutǁforward__mutmut_29": BUFFER_NAME,
    "nanokd.layers.xǁDropoutǁforward__mutmut_37": BUFFER_NAME,
    "nanokd.layers.xǁDropoutǁforward__mutmut_38": BUFFER_NAME,
    "nanokd.layers.xǁDropoutǁforward__mutmut_54": BUFFER_NAME,
    "nanokd.layers.xǁDropoutǁforward__mutmut_62": BUFFER_NAME,
    "nanokd.layers.xǁDropoutǁforward__mutmut_63": BUFFER_NAME,
    "nanokd.layers.x_max_norm___mutmut_2": CPU_ONLY,
    "nanokd.losses.x__check_logits__mutmut_3": CPU_ONLY,
    "nanokd.losses.x__check_pair__mutmut_15": CPU_ONLY,
    "nanokd.losses.x__check_pair__mutmut_17": CPU_ONLY,
    "nanokd.losses.x_cross_entropy__mutmut_14": CPU_ONLY,
    "nanokd.losses.x_cross_entropy_grad__mutmut_15": CPU_ONLY,
    "nanokd.losses.x_kd_loss_grad__mutmut_9": CPU_ONLY,
    "nanokd.losses.x_kl_divergence__mutmut_2": CPU_ONLY,
    "nanokd.losses.x_log_ratio__mutmut_8": CPU_ONLY,
    "nanokd.losses.x_log_softmax__mutmut_11": CPU_ONLY,
    "nanokd.losses.x_psi__mutmut_2": CPU_ONLY,
    "nanokd.losses.x_softmax__mutmut_4": CPU_ONLY,
    "nanokd.losses.x__check_pair__mutmut_18": PAIR_DEVICE,
    "nanokd.losses.x__check_pair__mutmut_19": PAIR_DEVICE,
    "nanokd.losses.x__check_pair__mutmut_20": PAIR_DEVICE,
    "nanokd.losses.x_cross_entropy__mutmut_17": CHECK_OFF,
    "nanokd.losses.x_cross_entropy_grad__mutmut_19": CHECK_OFF,
    "nanokd.losses.x_distillation_loss__mutmut_34": CHECK_OFF,
    "nanokd.losses.x_distillation_loss__mutmut_37": CHECK_OFF,
    "nanokd.losses.x_distillation_loss__mutmut_38": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_grad__mutmut_16": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_grad__mutmut_19": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_grad__mutmut_20": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_grad__mutmut_25": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_grad__mutmut_44": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_grad__mutmut_47": CHECK_OFF,
    "nanokd.losses.x_distillation_loss_grad__mutmut_48": CHECK_OFF,
    "nanokd.losses.x_kd_loss__mutmut_14": CHECK_OFF,
    "nanokd.losses.x_kd_loss__mutmut_18": CHECK_OFF,
    "nanokd.losses.x_kd_loss__mutmut_19": CHECK_OFF,
    "nanokd.losses.x_kd_loss_grad__mutmut_16": CHECK_OFF,
    "nanokd.losses.x_kd_loss_grad__mutmut_20": CHECK_OFF,
    "nanokd.losses.x_kd_loss_grad__mutmut_21": CHECK_OFF,
    "nanokd.losses.x_log_ratio__mutmut_12": CHECK_OFF,
    "nanokd.losses.x_log_ratio__mutmut_62": CHECK_OFF,
    "nanokd.losses.x_log_ratio__mutmut_65": CHECK_OFF,
    "nanokd.losses.x_log_ratio__mutmut_66": CHECK_OFF,
    "nanokd.losses.x_distillation_loss__mutmut_19": RATIO,
    "nanokd.losses.x_distillation_loss__mutmut_24": RATIO,
    "nanokd.losses.x_distillation_loss_grad__mutmut_26": RATIO,
    "nanokd.losses.x_distillation_loss_grad__mutmut_31": RATIO,
    "nanokd.losses.x_kd_loss__mutmut_10": RATIO,
    "nanokd.losses.x_kd_loss_grad__mutmut_12": RATIO,
    "nanokd.losses.x_distillation_loss__mutmut_26": TIMES_ZERO,
    "nanokd.losses.x_distillation_loss__mutmut_28": TIMES_ZERO,
    "nanokd.losses.x_distillation_loss__mutmut_31": TIMES_ZERO,
    "nanokd.losses.x_distillation_loss__mutmut_39": TIMES_ZERO,
    "nanokd.losses.x_distillation_loss__mutmut_40": TIMES_ZERO,
    "nanokd.losses.x_distillation_loss__mutmut_41": TIMES_ZERO,
    "nanokd.losses.x_distillation_loss_grad__mutmut_33": TIMES_ZERO,
    "nanokd.losses.x_distillation_loss_grad__mutmut_34": TIMES_ZERO,
    "nanokd.losses.x_kd_loss_grad__mutmut_33": BOUNDARY,
    "nanokd.losses.x_kl_divergence__mutmut_41": BOUNDARY,
    "nanokd.losses.x_kl_divergence__mutmut_49": BOUNDARY,
    "nanokd.losses.x_log_ratio__mutmut_74": BOUNDARY,
    "nanokd.losses.x_psi__mutmut_9": BOUNDARY,
    "nanokd.losses.x__check_temperature__mutmut_14": "float('INF') is float('inf') too",
    "nanokd.losses.x_kd_loss_grad__mutmut_38": ("expm1 of a very negative l is -1 without overflow, and that branch is "
                                                "not chosen there"),
    "nanokd.losses.x_kl_divergence__mutmut_21": ("below -FAR psi's first form underflows to 1 without overflow, and "
                                                 "that branch is not chosen there"),
    "nanokd.losses.x_log_softmax__mutmut_14": "z / 1 is z exactly: the copy it replaces",
    "nanokd.losses.x_series_limit__mutmut_5": "no floating dtype is 5 bytes wide: the same limit for every dtype",
    "nanokd.data.x__check_images__mutmut_7": ("the message's expected size says size[1] twice: size is only ever "
                                              "(28, 28), or None for custom data"),
    "nanokd.data.x_read_idx__mutmut_9": "gzip.open's default mode is the 'rb' it replaces",
    "nanokd.losses.x__check_labels__mutmut_3": CPU_ONLY,
    "nanokd.losses.x__check_labels__mutmut_8": "no dtype has kind 'X': the same kinds are accepted",
    "nanokd.losses.x_distillation_loss__mutmut_14": ("the soft term computed at alpha = 0 too, then multiplied by 0: "
                                                     "kd_loss is finite, so the same loss"),
    "nanokd.losses.x_distillation_loss__mutmut_18": "check=None is falsy, as the False it replaces",
    "nanokd.mlp.xǁMLPǁ__init____mutmut_15": "'' is no dtype's name either: the same ValueError",
    "nanokd.mlp.xǁMLPǁ__init____mutmut_87": "inplace=None is falsy, as the False it replaces",
    "nanokd.mlp.xǁMLPǁ__init____mutmut_89": "inplace's default is the False it replaces",
    "nanokd.mlp.xǁMLPǁ__init____mutmut_149": HIDDEN_DROPOUT,
    "nanokd.mlp.xǁMLPǁ__init____mutmut_151": HIDDEN_DROPOUT,
    "nanokd.mlp.xǁMLPǁ__init____mutmut_152": HIDDEN_DROPOUT,
    "nanokd.mlp.xǁMLPǁ__init____mutmut_164": ("the dropout generator's first seed, seed + 2 for seed + 1: the masks "
                                               "are still set by the seed alone, and the trainer reseeds each epoch"),
    "nanokd.mlp.xǁMLPǁforward__mutmut_11": CPU_ONLY,
    "nanokd.mlp.xǁMLPǁforward__mutmut_13": ("the message of the device check, which only a CuPy array fails: "
                                           "test_mlp.py's test_a_batch_on_another_device_is_refused, on a GPU"),
    "nanokd.mlp.xǁMLPǁforward__mutmut_14": ("the message of the device check, which only a CuPy array fails: "
                                           "test_mlp.py's test_a_batch_on_another_device_is_refused, on a GPU"),
    "nanokd.mlp.xǁMLPǁforward__mutmut_16": ("x.astype(its own dtype) is a copy of x: the same values, x still "
                                            "untouched"),
    "nanokd.layers.x_max_norm___mutmut_12": "einsum's labels may be upper case: the same sum",
    "nanokd.layers.x_max_norm___mutmut_14": "a float64 factor: the scaled weight is rounded once instead of twice",
    "nanokd.layers.x_max_norm___mutmut_15": "astype's copy flag: the same values, a copy or not",
    "nanokd.layers.x_max_norm___mutmut_17": "astype's copy flag: the same values, a copy or not",
    "nanokd.layers.x_max_norm___mutmut_29": "astype's copy flag: the same values, a copy or not",
    "nanokd.layers.x_max_norm___mutmut_22": GPU_BRANCH,
    "nanokd.layers.x_max_norm___mutmut_30": "the GPU branch on the CPU: every column times its factor, 1 inside the "
                                            "ball, so the same weights",
    "nanokd.layers.x_max_norm___mutmut_31": "W[:, None] *= scale[None] scales every column by its factor (1 inside "
                                            "the ball): the same weights",
    "nanokd.layers.x_max_norm___mutmut_33": "also multiplies the columns whose factor is exactly 1: the same weights",
    "nanokd.layers.x_max_norm___mutmut_34": "also multiplies the columns whose factor is exactly 1: the same weights",
    "nanokd.layers.x_max_norm___mutmut_37": GPU_BRANCH,
    "nanokd.layers.x_max_norm___mutmut_38": GPU_BRANCH,
    "nanokd.elastic.x_gaussian_matrix__mutmut_3": ("the pixel positions as int64 instead of float64: (i - j)^2 is the "
                                                   "same small integer, divided in float64 either way"),
    "nanokd.elastic.x_gaussian_matrix__mutmut_5": ("the pixel positions as int64 instead of float64: (i - j)^2 is the "
                                                   "same small integer, divided in float64 either way"),
    "nanokd.elastic.x_displacement_fields__mutmut_12": CPU_ONLY,
    "nanokd.elastic.x_warp__mutmut_2": CPU_ONLY,
    "nanokd.elastic.x_distort__mutmut_14": CPU_ONLY,
    "nanokd.elastic.x_warp__mutmut_16": ("a frame one zero row and column wider: the indices use the same p, so they "
                                         "gather the same pixels and zeros"),
    "nanokd.elastic.x_warp__mutmut_38": NEGATIVE_SIZE,
    "nanokd.elastic.x_warp__mutmut_135": NEGATIVE_SIZE,
    "nanokd.elastic.x_warp__mutmut_59": ("points clamped to -2 instead of -1 above the frame gather two zero rows (the "
                                         "frame's, and the previous image's last, or by wrap-around the last "
                                         "image's) instead of one: zero either way"),
    "nanokd.elastic.x_warp__mutmut_69": ("points clamped to -2 instead of -1 left of the frame gather the previous "
                                         "row's zero columns instead of the frame's: zero either way"),
    "nanokd.elastic.x_warp__mutmut_78": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_79": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_80": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_81": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_82": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_83": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_84": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_85": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_99": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_101": INDEX_TYPE,
    "nanokd.elastic.x_warp__mutmut_138": COPY,
    "nanokd.elastic.x_warp__mutmut_140": COPY,
    "nanokd.elastic.x_warp__mutmut_141": COPY,
}


def merged(runs):
    """One status per mutant from several runs' results: the last status that is not "not checked".

    The last run's mutants are the ones that count: it is of the newest code, so
    a mutant that only earlier runs list (of a function since moved to another
    module, or removed) is left out.
    """
    runs, status = list(runs), {}
    for run in runs:
        for name, what in run.items():
            if what != "not checked" or name not in status:
                status[name] = what
    return {name: status[name] for name in runs[-1]} if runs else status


def results(cwd="."):
    """mutant name -> status ("killed", "survived", "not checked", "timeout", "no tests", ...)."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=cwd, capture_output=True, text=True,
                         check=True).stdout
    status = {}
    for line in out.splitlines():
        name, sep, what = line.strip().rpartition(": ")
        if sep and name.startswith("nanokd."):
            status[name] = what
    return status


def scores(status):
    """module -> counts and score (None while mutants are unchecked), and its unexplained survivors."""
    by_module = collections.defaultdict(collections.Counter)
    unexplained = collections.defaultdict(list)
    for name, what in status.items():
        module = name.split(".")[1]
        if what in ("survived", "segfault") and name in EQUIVALENT:  # segfault: a worker killed while it hung
            what = "equivalent"
        by_module[module][what] += 1
        if what == "survived":
            unexplained[module].append(name)
    table = {}
    for module in MODULES:
        c = by_module[module]
        detected = c["killed"] + c["timeout"]
        judged = detected + c["survived"] + c["no tests"]
        table[module] = {"mutants": sum(c.values()), "killed": c["killed"], "timeout": c["timeout"],
                         "survived": c["survived"], "equivalent": c["equivalent"], "no_tests": c["no tests"],
                         "not_checked": c["not checked"], "hung_and_killed": c["segfault"],
                         "score": round(detected / judged, 4) if judged and not c["not checked"] else None,
                         "score_so_far": round(detected / judged, 4) if judged else None,
                         "unexplained_survivors": sorted(unexplained[module])}
    return table


def stale(status):
    """Mutants listed in EQUIVALENT that a test kills: their reason is wrong (or a test got stronger)."""
    return sorted(name for name in EQUIVALENT if status.get(name) in ("killed", "timeout"))


def keep_unchecked(table, record, only=None):
    """The table, with each module this run has not checked at all taken from an earlier ``record``.

    A module is unchecked when every one of its mutants is "not checked" (or
    it has none): a run of one module (``mutmut run 'nanokd.data*'``) then
    updates that module's row and keeps the others'.  ``only``: the modules
    whose rows this run gives; every other row is the record's, checked or
    not (for a module this run went through only in part).  Every row says
    where it comes from: ``from`` is the date and commit of the record it was
    measured for (``None`` for this run's rows).
    """
    out = {}
    for module, row in table.items():
        old = record["modules"].get(module)
        unchecked = row["mutants"] == row["not_checked"] or (only is not None and module not in only)
        if unchecked and old is not None:
            row = dict(old, **{"from": old.get("from") or {"date": record["date"], "git_commit": record["git_commit"]}})
        else:
            row = dict(row, **{"from": None})
        out[module] = row
    return out


def markdown(table):
    """The per-module table in markdown: mutants, detected, survivors shown equivalent, the rest, score."""
    lines = ["| module | mutants | killed (timeouts) | equivalent | survived | not yet run | score |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for module, r in table.items():
        if r["score"] is not None:
            score = f"**{100 * r['score']:.1f} %**"
        elif r["score_so_far"] is not None:
            score = f"{100 * r['score_so_far']:.1f} % of those run"
        else:
            score = "–"
        lines.append(f"| {module} | {r['mutants']} | {r['killed']} ({r['timeout']}) | {r['equivalent']} | "
                     f"{r['survived'] + r['no_tests']} | {r['not_checked']} | {score} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.mutation_report", description=__doc__.split("\n")[0])
    ap.add_argument("--cwd", nargs="+", default=["."],
                    help="the folder of the mutmut run (holding mutants/); with several, each mutant's status is "
                         "the last one checked, so a later run of one module replaces that module's results")
    ap.add_argument("--json", metavar="PATH", help="write the record here")
    ap.add_argument("--markdown", action="store_true", help="print the table as markdown (for RESULTS.md)")
    ap.add_argument("--keep", metavar="RECORD",
                    help="an earlier record (e.g. benchmarks/results/mutation.json): the modules this run has not "
                         "checked at all keep their rows from it, each saying the date and commit it is of")
    ap.add_argument("--only", nargs="+", metavar="MODULE", choices=MODULES,
                    help="with --keep: only these modules' rows come from this run")
    args = ap.parse_args(argv)
    if args.only and not args.keep:
        ap.error("--only needs --keep RECORD (the rows of the other modules)")
    status = merged(results(cwd) for cwd in args.cwd)
    table, wrong = scores(status), stale(status)
    if args.keep:
        with open(args.keep) as f:
            table = keep_unchecked(table, json.load(f), args.only)
        if args.only:  # the other modules' rows are the record's, and so is what it said of their keys
            wrong = [name for name in wrong if name.split(".")[1] in args.only]
    if args.markdown:
        print(markdown(table))
    print(f"{'module':11s} {'mutants':>7s} {'killed':>6s} {'timeout':>7s} {'survived':>8s} {'equiv.':>6s} "
          f"{'unchecked':>9s} {'score':>6s}")
    for module, r in table.items():
        score = "-" if r["score"] is None else f"{100 * r['score']:.1f}%"
        if r["score"] is None and r["score_so_far"] is not None:
            score = f"({100 * r['score_so_far']:.1f}% so far)"
        kept = f"  (kept: of {r['from']['git_commit']}, {r['from']['date']})" if r.get("from") else ""
        print(f"{module:11s} {r['mutants']:7d} {r['killed']:6d} {r['timeout']:7d} {r['survived']:8d} "
              f"{r['equivalent']:6d} {r['not_checked']:9d} {score}{kept}")
    for name in wrong:
        print(f"listed as equivalent, but killed: {name}")
    if args.json:
        write_record(args.json, {"what": "mutation score per module (mutmut)", "date": now(),
                                 "git_commit": git_commit(), "machine": machine(),
                                 "command": "mutmut run; " + command_line("benchmarks.mutation_report", argv),
                                 "modules": table, "listed_equivalent_but_killed": wrong,
                                 "equivalent": {k: v for k, v in EQUIVALENT.items()}})
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
