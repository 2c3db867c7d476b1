"""DualForce training: the accelerate training loop, loss terms and the toy TalkingShapes data."""
