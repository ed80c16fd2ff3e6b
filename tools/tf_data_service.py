#!/usr/bin/env python
"""Runs a tf.data service dispatcher or worker for --config.data.tf_data_service.

When one host's CPU cores cannot decode and augment images as fast as its accelerators train,
other machines can run the training input pipeline (TensorFlow's own tf.data service):

  one host:        python tools/tf_data_service.py --role=dispatcher --port=5050
  each CPU host:   python tools/tf_data_service.py --role=worker --port=5051 \\
                     --dispatcher=DISPATCHER_HOST:5050
  the trainer(s):  python -m official.train ... \\
                     --config.data.tf_data_service=grpc://DISPATCHER_HOST:5050

Workers need TensorFlow (the same version as the trainer) and the training files at the same
paths (or the same gs:// URLs); they receive the pipeline as a graph from the trainer and send
back finished batches. Stop a server with Ctrl-C.
"""

import os
import socket

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

_ROLE = flags.DEFINE_enum("role", None, ["dispatcher", "worker"], "Which server to run.")
_PORT = flags.DEFINE_integer("port", None, "Port to listen on.")
_DISPATCHER = flags.DEFINE_string("dispatcher", "", "HOST:PORT of the dispatcher (workers).")
_HOST = flags.DEFINE_string(
    "host", socket.getfqdn(), "Name under which trainers reach this worker (workers)."
)
_WORK_DIR = flags.DEFINE_string(
    "work_dir", "", "Dispatcher state directory, so a restarted dispatcher resumes its jobs."
)
flags.mark_flags_as_required(["role", "port"])


def main(argv):
    del argv
    import tensorflow as tf

    service = tf.data.experimental.service
    if _ROLE.value == "dispatcher":
        config = service.DispatcherConfig(
            port=_PORT.value,
            work_dir=_WORK_DIR.value or None,
            fault_tolerant_mode=bool(_WORK_DIR.value),
        )
        server = service.DispatchServer(config)
        print(f"dispatcher listening on grpc://{_HOST.value}:{_PORT.value}", flush=True)
    else:
        if not _DISPATCHER.value:
            raise app.UsageError("--role=worker needs --dispatcher=HOST:PORT")
        config = service.WorkerConfig(
            dispatcher_address=_DISPATCHER.value.removeprefix("grpc://"),
            worker_address=f"{_HOST.value}:{_PORT.value}",
            port=_PORT.value,
        )
        server = service.WorkerServer(config)
        print(f"worker {_HOST.value}:{_PORT.value} serving {_DISPATCHER.value}", flush=True)
    server.join()


if __name__ == "__main__":
    app.run(main)
