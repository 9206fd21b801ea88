"""The HTTP front end (extra ``serve``): a FastAPI app over hashtag.runtime, scaled out on Ray Serve."""
