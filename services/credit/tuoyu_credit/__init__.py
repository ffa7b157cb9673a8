"""The credit service (信用): institution credit scores, grades and lists; practitioner bans."""
