"""Pictures of what the operations do: the sliding window animated, receptive fields drawn."""
