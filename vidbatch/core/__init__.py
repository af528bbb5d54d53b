"""The bottom layer: the run's configuration and the error hierarchy. Everything may import it; it imports
nothing else of vidbatch."""
