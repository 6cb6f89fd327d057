mod acceptance;
