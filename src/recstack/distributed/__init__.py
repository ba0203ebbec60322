"""Hand-over to distributed engines: Apache Spark (ALS training, batch top-k) and PyTorch DDP."""
