"""What an operator asks of the jobs table: listings, statistics and actions on jobs and queues (``WorkerUtils``)."""
