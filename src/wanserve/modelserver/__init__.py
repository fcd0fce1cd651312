"""What wanserve's model servers (KServe's, TorchServe's) share: the tasks they hold and how a
submitted task is read (decision 0012)."""
