"""The local leaderboard: storing, ranking, comparing and rendering run records."""
