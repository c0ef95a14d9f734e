// Placeholder entry point until the CLI module lands in this same change set.
int main() { return 0; }
