// Tests of the fake forge itself.
