"""Streamlit app: storyboards side by side, results, and the blinded user study."""
