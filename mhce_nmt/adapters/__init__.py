"""fairseq adapters around the plain-torch core: model, criterion, task, sequence generator."""
