"""Control plane: REST API over SQL, Celery and MLflow. Torch-free: installs with the `api` extra."""
