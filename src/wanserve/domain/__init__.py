"""The pure core of wanserve: specs, models, tasks, events and errors. No I/O, no frameworks."""
