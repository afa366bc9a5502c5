"""TikTok advertiser authorization: the link, its signed state, and the callback."""
